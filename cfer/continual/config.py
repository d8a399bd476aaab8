"""Settings of ``cfer train-incremental`` (:func:`cfer.continual.run_incremental`).

Defaults are sized so that the whole default run (basic phase on one fold, then 15 compound steps of
one order with the paper's strategy) finishes in about 10 minutes on a 2-core CPU; the paper's values
are noted where they differ. Load with ``cfer.config.load_config(IncrementalConfig, path, overrides)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from cfer.core.trunk import FeatureCacheConfig
from cfer.data.sources import DataConfig
from cfer.training.augment import AugmentConfig
from cfer.training.basic import BasicPhaseConfig
from strategies.early_stopping import EarlyStoppingMetric

__all__ = ["IncrementalConfig", "default_basic_phase"]


def default_basic_phase() -> BasicPhaseConfig:
    """The basic phase of the default run: ``cfer train-basic``'s defaults (all 230 subjects) on one fold."""
    return BasicPhaseConfig(fold=0, progress=False)


@dataclass(frozen=True)
class IncrementalConfig:
    """Basic phase, then compound classes added one at a time with continual-learning strategies."""

    basic: BasicPhaseConfig = field(default_factory=default_basic_phase)  # data, model, basic training
    # the compound images from another source (e.g. basic.data CFEE, compound_data a CSV of your own);
    # None reads them from basic.data (source rafdb reads RAF-DB's compound set beside its basic one)
    compound_data: DataConfig | None = None
    strategies: list[str] = field(default_factory=lambda: ["cfer"])  # names in strategies.STRATEGIES
    orders: int = 1  # random orders of the compound classes; results are averaged over them (paper: 10)
    class_order: list[str] | None = None  # one fixed compound order instead of random ones
    seed: int = 0  # compound orders, training randomness
    # most epochs per step; 8 epochs, lr 3e-4 and the last block group trained were chosen on validation
    # subjects (examples/tune_step_budget.py; reference: up to 1000 epochs, patience 100, its last stage)
    epochs: int = 8
    patience: int = 2  # epochs without validation improvement before a step stops; 0 disables
    early_stopping_metric: EarlyStoppingMetric = "accuracy"  # 'accuracy' (reference) or 'loss'
    lr: float = 3e-4  # Adam learning rate of the incremental steps
    batch_size: int = 32  # training mini-batch size
    eval_batch_size: int = 128  # evaluation mini-batch size
    trainable_blocks: int = 1  # last backbone block groups trained (efficientnet_lite0: blocks.6 and conv_head)
    memory_fraction: float = 0.3  # replay budget M as a share of the stream's training images (paper)
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(enabled=False))  # as the basic phase
    feature_cache: FeatureCacheConfig = field(default_factory=FeatureCacheConfig)  # frozen trunk computed once
    strategy_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-strategy config fields
    # valence/arousal (when basic.model.regression_outputs > 0): weight of the teacher-bounded regression
    # loss against the basic-phase model, added to every strategy that keeps the regressor (0: left untrained)
    regression_weight: float = 1.0
    regression_margin: float = 0.0  # teacher-bounded loss: margin m (as cfer distill)
    regression_nu: float = 0.5  # teacher-bounded loss: weight of the bounded term (Chen et al. 2017)
    # 'held-out': choose on validation subjects, report test subjects; 'reference': as the reference code,
    # run every basic fold and keep the best on its test subjects, early-stop each step on the test images
    # it reports and rank PSMR by logit (optimistic, for comparison)
    protocol: Literal["held-out", "reference"] = "held-out"
    # confusion-matrix figures: every step of the first order and the last step of the others, the
    # last step of every order, or none (every matrix is in results.json either way)
    confusion_plots: Literal["first-order", "last-step", "none"] = "first-order"
    max_experiences: int | None = None  # stop each run after this many experiences; rerun to resume
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda[:k]"
    progress: bool = False  # Avalanche's interactive logger on the terminal
