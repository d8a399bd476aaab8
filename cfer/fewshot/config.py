"""Settings of ``cfer fewshot`` (:func:`cfer.fewshot.runner.run_fewshot`).

Defaults are sized so that the whole default run (a one-fold basic phase, the paper's protocol over
15 compound classes x 4 values of K x 3 seeds, and 4 x 600 episodes per backbone) takes a few minutes
on a 2-core CPU. Load with ``cfer.config.load_config(FewShotConfig, path, overrides)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cfer.data.sources import DataConfig
from cfer.fewshot.episodic import EpisodicConfig
from cfer.fewshot.protocol import PaperProtocolConfig
from cfer.models.classifier import ModelConfig
from cfer.training.augment import AugmentConfig
from cfer.training.basic import BasicPhaseConfig

__all__ = ["FewShotConfig", "default_fewshot_basic_phase"]


def default_fewshot_basic_phase() -> BasicPhaseConfig:
    """The basic phase trained when no ``basic_run`` is given: one fold of 120 subjects at 48 px.

    Augmentation is off: at this scale the augmented fine-tuning stage never beat the head stage's
    validation loss (measured on the embedded dataset), so the basic phase restored a head-stage
    model whose backbone is still the ImageNet one, which would make the backbone comparison void.
    """
    return BasicPhaseConfig(
        data=DataConfig(size=48, subjects=120),
        model=ModelConfig(),
        augment=AugmentConfig(enabled=False),
        fold=0,
        head_epochs=30,
        finetune_epochs=6,
        patience=3,
        progress=False,
    )


@dataclass(frozen=True)
class FewShotConfig:
    """Few-shot learning of compound expressions: the paper's protocol and episodic evaluation."""

    basic_run: str | None = None  # finished basic-phase run directory to reuse; None trains `basic` into OUT/basic
    basic: BasicPhaseConfig = field(default_factory=default_fewshot_basic_phase)  # used when basic_run is None
    # the few-shot images (basic + compound classes); source, seed and size must match the basic run's,
    # and subjects beyond the basic run's are held out (never seen by the basic model)
    data: DataConfig = field(default_factory=lambda: DataConfig(size=48, subjects=160))
    paper: PaperProtocolConfig = field(default_factory=PaperProtocolConfig)  # the paper's one-class-at-a-time protocol
    episodic: EpisodicConfig = field(default_factory=EpisodicConfig)  # N-way K-shot episodes, two backbones
    seed: int = 0  # shot selection, new-unit initialisation and episodes
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda[:k]"
