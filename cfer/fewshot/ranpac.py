"""Few-shot methods on RanPAC's statistics: plain, and calibrated toward similar base classes.

All three keep RanPAC's head (:class:`~cfer.core.prototypes.RandomProjectionRidge`: a fixed random
ReLU projection, a ridge classifier of accumulated Gram and class sums), fitted on the base session's
training features with its ``λ`` chosen on them. A session adds statistics:

* ``ranpac``: the shots themselves (McDonnell et al. 2023);
* ``c-ranpac``: C-RanPAC (Goswami et al. 2024): 800 samples of each new class's Gaussian, its mean and
  covariance calibrated toward the base classes most similar to its shots
  (:func:`~cfer.core.calibration.calibrated_gaussian`);
* ``compose-ranpac`` (:mod:`cfer.fewshot.compose`) calibrates toward each compound's components instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cfer.core.calibration import (
    CalibratedGaussian,
    calibrated_gaussian,
    sample_classes,
    similarity_weights,
)
from cfer.core.imprinting import class_means
from cfer.core.prototypes import RandomProjectionRidge
from cfer.fewshot.learner import BaseSession, FewShotLearner

__all__ = [
    "CRanPACConfig",
    "CRanPACLearner",
    "RanPACConfig",
    "RanPACLearner",
]


@dataclass(frozen=True)
class RanPACConfig:
    """RanPAC's head on the frozen backbone features."""

    projection_dim: int = 2000  # M of the random ReLU projection (the paper: 10,000)
    ridge: float | None = None  # λ; None: chosen on the base session's features (RanPAC's held-out MSE)


class RanPACLearner(FewShotLearner):
    """RanPAC: McDonnell et al. (NeurIPS 2023), on the base session, then on each session's shots.

    Args:
        base: The base session.
        config: The head's settings.
        seed: Seeds the projection (and the samples of the subclasses).
    """

    def __init__(self, base: BaseSession, config: RanPACConfig, seed: int = 0) -> None:
        super().__init__(base, seed)
        self.config = config
        features = base.features.float()
        self.head = RandomProjectionRidge(features.shape[1], config.projection_dim, ridge=config.ridge or 1.0, seed=seed)
        self.head.update(features, base.labels, solve=config.ridge is not None)
        if config.ridge is None:
            self.head.choose_ridge(features, base.labels, seed=seed)
        self.base_rows = [features[base.labels == j] for j in range(base.num_classes)]
        self.base_means = class_means(features, base.labels, base.num_classes)

    def _learn(self, support: Tensor, labels: Tensor, num_new: int) -> None:
        self.head.update(*self._statistics_samples(support, labels, num_new))

    def _statistics_samples(self, support: Tensor, labels: Tensor, num_new: int) -> tuple[Tensor, Tensor]:
        """What the session adds to the statistics: features (n, D) and their outputs (n,)."""
        return support, labels

    @torch.no_grad()
    def logits(self, features: Tensor) -> Tensor:
        return self.head(features.float())


@dataclass(frozen=True)
class CRanPACConfig(RanPACConfig):
    """C-RanPAC's calibration; the defaults of its reference code (``models/ranpac.py``)."""

    shift_weight: float = 0.9  # α: the shots' share of the calibrated mean
    softmax_temperature: float = 16.0  # τ of the softmax over cosine similarities to the base means
    covariance_weight: float = 0.5  # β: the base classes' share of the calibrated covariance
    samples: int = 800  # pseudo-features per new class, in place of its shots


class CRanPACLearner(RanPACLearner):
    """C-RanPAC: Goswami et al. (CVPRW 2024), calibrated Gaussians sampled into RanPAC's statistics."""

    config: CRanPACConfig

    def _statistics_samples(self, support: Tensor, labels: Tensor, num_new: int) -> tuple[Tensor, Tensor]:
        outputs = range(self.num_classes, self.num_classes + num_new)
        gaussians = [(output, self._gaussian(support[labels == output], output)) for output in outputs]
        return sample_classes(gaussians, self.config.samples, self._generator())

    def _gaussian(self, shots: Tensor, output: int) -> CalibratedGaussian:
        """The calibrated Gaussian of new output ``output`` from its shots (K, D)."""
        weights = similarity_weights(shots.mean(0, keepdim=True), self.base_means, self.config.softmax_temperature)[0]
        return calibrated_gaussian(shots, self.config.shift_weight, weights @ self.base_means, weights,
                                   self.base_rows, self.config.covariance_weight)
