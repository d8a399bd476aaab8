"""Avalanche strategies for adding compound expressions to a basic-expression backbone.

Each method is plain PyTorch first (:mod:`strategies.distillation`, :mod:`strategies.psmr`) with a
thin Avalanche adapter over it (:mod:`strategies.plugins`); :func:`create_strategy` builds the
paper's strategy, its ablations and Avalanche's baselines by name.
"""

from strategies.distillation import (
    DistillationLoss,
    distillation_loss,
    kd_weight,
    pad_logits,
    soft_cross_entropy,
)
from strategies.plugins import (
    ClassifierExpansionPlugin,
    DistillationPlugin,
    HeadL2Plugin,
    PSMRReplayPlugin,
    frozen_copy,
)
from strategies.protocols import GrowingClassifier
from strategies.psmr import (
    PredictiveSortingSelection,
    PSMRBuffer,
    memory_per_class,
    predict_logits,
    predictive_sort,
    representative_memory_size,
)
from strategies.registry import (
    STRATEGIES,
    CferConfig,
    StrategySpec,
    create_strategy,
    make_config,
)

__all__ = [
    "STRATEGIES",
    "CferConfig",
    "ClassifierExpansionPlugin",
    "DistillationLoss",
    "DistillationPlugin",
    "GrowingClassifier",
    "HeadL2Plugin",
    "PSMRBuffer",
    "PSMRReplayPlugin",
    "PredictiveSortingSelection",
    "StrategySpec",
    "create_strategy",
    "distillation_loss",
    "frozen_copy",
    "kd_weight",
    "make_config",
    "memory_per_class",
    "pad_logits",
    "predict_logits",
    "predictive_sort",
    "representative_memory_size",
    "soft_cross_entropy",
]
