"""Training: the supervised loop, batch augmentation and the basic phase."""

from cfer.training.augment import AugmentConfig, BatchAugment, make_preprocess
from cfer.training.basic import BasicPhaseConfig, basic_classes, load_basic_model, run_basic_phase
from cfer.training.loop import EpochStats, Evaluation, Trainer, make_loader, resolve_device

__all__ = [
    "AugmentConfig",
    "BasicPhaseConfig",
    "BatchAugment",
    "EpochStats",
    "Evaluation",
    "Trainer",
    "basic_classes",
    "load_basic_model",
    "make_loader",
    "make_preprocess",
    "resolve_device",
    "run_basic_phase",
]
