"""Settings of ``cfer fewshot`` (:func:`cfer.fewshot.runner.run_fewshot`).

The default basic phase is ``cfer train-incremental``'s (one fold of the 230 subjects at 64 px), so
both commands learn the same basic model and score the same held-out subjects, and the FSCIL table
can stand beside the full-data continual runs. Every protocol runs on backbone features computed once
(kept in ``OUT/features.pt``), so after the basic phase the default run takes a few minutes on a
2-core CPU. Load with ``cfer.config.load_config(FewShotConfig, path, overrides)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from cfer.data.sources import DataConfig
from cfer.fewshot.episodic import EpisodicConfig
from cfer.fewshot.fscil import FSCILConfig
from cfer.fewshot.protocol import PaperProtocolConfig
from cfer.training.basic import BasicPhaseConfig

__all__ = ["DEFAULT_METHODS", "FewShotConfig", "default_fewshot_basic_phase"]

DEFAULT_METHODS = ("paper", "paper+memory", "imprint", "teen", "imprint-ft", "ranpac", "c-ranpac", "compose",
                   "compose-ranpac")
"""The methods of :data:`~cfer.fewshot.methods.FEWSHOT_METHODS` a default run compares."""


def default_fewshot_basic_phase() -> BasicPhaseConfig:
    """``cfer train-incremental``'s basic phase (``cfer.continual.config.default_basic_phase``): one fold.

    Restated rather than imported, since importing ``cfer.continual`` loads Avalanche, which the few-shot
    protocols never use; a test checks that the two stay equal.
    """
    return BasicPhaseConfig(fold=0, progress=False)


@dataclass(frozen=True)
class FewShotConfig:
    """Few-shot learning of compound expressions: the paper's protocol, FSCIL sessions and episodic evaluation."""

    basic_run: str | None = None  # finished basic-phase run directory to reuse; None trains `basic` into OUT/basic
    basic: BasicPhaseConfig = field(default_factory=default_fewshot_basic_phase)  # used when basic_run is None
    # the few-shot images (basic + compound classes); source, seed and size must match the basic run's,
    # and subjects beyond the basic run's are held out (never seen by the basic model)
    data: DataConfig = field(default_factory=DataConfig)
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))  # names in FEWSHOT_METHODS
    # per method, fields of its config dataclass, e.g. {teen: {shift_weight: 0.3}}; an unknown key is an error
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    paper: PaperProtocolConfig = field(default_factory=PaperProtocolConfig)  # the paper's one-class-at-a-time protocol
    fscil: FSCILConfig = field(default_factory=FSCILConfig)  # few-shot class-incremental sessions
    episodic: EpisodicConfig = field(default_factory=EpisodicConfig)  # N-way K-shot episodes, two backbones
    # score on the held-out subjects (report), or on the basic run's validation subjects, to choose
    # settings without ever looking at the held-out ones
    evaluate_on: Literal["held-out", "validation"] = "held-out"
    cache_features: bool = True  # keep the backbone features in OUT/features.pt; a rerun skips the images and the CNN
    seed: int = 0  # shot selection, class orders, method seeds and episodes
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda[:k]"
    progress: bool = True  # progress bars over each method's runs
