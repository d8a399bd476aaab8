"""Avalanche adapters for adding compound expressions to a basic-expression backbone.

The algorithms themselves are plain PyTorch in :mod:`cfer.core` (distillation loss and schedule,
predictive sorting, head growth); this package holds only what ties them to Avalanche: plugins
(:mod:`strategies.plugins`, :mod:`strategies.early_stopping`, :mod:`strategies.baselines`,
:mod:`strategies.regression`), the PSMR
storage policy (:mod:`strategies.psmr`), resume (:mod:`strategies.states`, :mod:`strategies.checkpoint`)
and the registry (:mod:`strategies.registry`), where :func:`create_strategy` builds the paper's
strategy, its ablations and Avalanche's baselines by name.
"""

from strategies.checkpoint import StreamCheckpoint, seed_everything
from strategies.early_stopping import (
    EARLY_STOPPING_METRICS,
    EarlyStoppingMetric,
    ValidationEarlyStoppingPlugin,
)
from strategies.plugins import (
    ClassifierExpansionPlugin,
    DistillationPlugin,
    HeadL2Plugin,
    PSMRReplayPlugin,
    TrainingThroughputPlugin,
)
from strategies.protocols import GrowingClassifier
from strategies.psmr import PredictiveSortingSelection, PSMRBuffer
from strategies.regression import BoundedRegressionPlugin
from strategies.registry import (
    STRATEGIES,
    CferConfig,
    Strategy,
    StrategySpec,
    create_strategy,
    hooked_modules,
    make_config,
    trained_model,
)
from strategies.states import RestoreContext, StrategyState

__all__ = [
    "EARLY_STOPPING_METRICS",
    "STRATEGIES",
    "BoundedRegressionPlugin",
    "CferConfig",
    "ClassifierExpansionPlugin",
    "DistillationPlugin",
    "EarlyStoppingMetric",
    "GrowingClassifier",
    "HeadL2Plugin",
    "PSMRBuffer",
    "PSMRReplayPlugin",
    "PredictiveSortingSelection",
    "RestoreContext",
    "Strategy",
    "StrategySpec",
    "StrategyState",
    "StreamCheckpoint",
    "TrainingThroughputPlugin",
    "ValidationEarlyStoppingPlugin",
    "create_strategy",
    "hooked_modules",
    "make_config",
    "seed_everything",
    "trained_model",
]
