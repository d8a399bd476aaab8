"""Plain-PyTorch algorithm cores: no Avalanche here, so each can be used and tested on its own.

* :mod:`cfer.core.distillation`: the continual distillation loss and its weight schedule
  (Maiden & Nakisa 2023), the frozen teacher copy;
* :mod:`cfer.core.sorting`: predictive sorting and the PSMR memory budget;
* :mod:`cfer.core.growth`: growing an output layer by whole classes;
* :mod:`cfer.core.inference`: batched inference;
* :mod:`cfer.core.head_training`: fitting a head on features computed once;
* :mod:`cfer.core.early_stopping`: early stopping on a validation score;
* :mod:`cfer.core.imprinting`: weight imprinting on a cosine classifier (Qi et al. 2018);
* :mod:`cfer.core.calibration`: TEEN's training-free prototype calibration (Wang et al. 2023) and
  C-RanPAC's calibrated Gaussians of new classes (Goswami et al. 2024);
* :mod:`cfer.core.composition`: compound prototypes from their basic components (zero-shot compounds).

The Avalanche adapters over these are in the ``strategies`` package.
"""

from cfer.core.calibration import (
    CalibratedGaussian,
    calibrate_prototypes,
    calibrated_gaussian,
    component_weights,
    sample_gaussian,
    similarity_weights,
)
from cfer.core.distillation import (
    DistillationLoss,
    distillation_loss,
    frozen_copy,
    kd_weight,
    pad_logits,
    soft_cross_entropy,
)
from cfer.core.early_stopping import EarlyStopping
from cfer.core.growth import expand_linear, glorot_linear
from cfer.core.head_training import HeadEpoch, fit_head
from cfer.core.imprinting import CosineClassifier, class_means, imprint_weights
from cfer.core.inference import predict
from cfer.core.sorting import (
    SCORES,
    Score,
    memory_per_class,
    predictive_sort,
    representative_memory_size,
    sample_per_class,
    sort_by_score,
)

__all__ = [
    "SCORES",
    "CalibratedGaussian",
    "CosineClassifier",
    "DistillationLoss",
    "EarlyStopping",
    "HeadEpoch",
    "Score",
    "calibrate_prototypes",
    "calibrated_gaussian",
    "component_weights",
    "class_means",
    "distillation_loss",
    "expand_linear",
    "fit_head",
    "frozen_copy",
    "glorot_linear",
    "imprint_weights",
    "kd_weight",
    "memory_per_class",
    "pad_logits",
    "predict",
    "predictive_sort",
    "representative_memory_size",
    "sample_gaussian",
    "sample_per_class",
    "similarity_weights",
    "soft_cross_entropy",
    "sort_by_score",
]
