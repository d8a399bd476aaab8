"""Few-shot methods on RanPAC's statistics: plain, calibrated by similarity, and composed from components.

All three keep RanPAC's head (:class:`~cfer.core.prototypes.RandomProjectionRidge`: a fixed random
ReLU projection, a ridge classifier of accumulated Gram and class sums), fitted on the base session's
training features with its ``λ`` chosen on them. A session adds statistics:

* ``ranpac``: the shots themselves (McDonnell et al. 2023);
* ``c-ranpac``: C-RanPAC (Goswami et al. 2024): 800 samples of each new class's Gaussian, its mean and
  covariance calibrated toward the base classes most similar to its shots
  (:func:`~cfer.core.calibration.calibrated_gaussian`);
* ``compose``: cfer's compositional method. A compound is a blend of two known basic expressions, so
  its Gaussian is calibrated toward **its own components** instead of toward look-alikes: the mean
  toward a compositional prior (the AU map of :class:`~cfer.core.composition.AUFeatureMap` at the
  compound's prototypical AUs when the data carries AU intensities, else the components' prototypes,
  :func:`~cfer.core.composition.compositional_prior`), the covariance toward the mean of the two
  components' covariances. The shots' mean weighs ``K / (K + κ)``: a conjugate-normal shrinkage with
  the prior worth ``κ`` shots, so one shot moves the prototype less than five.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from cfer.core.calibration import (
    CalibratedGaussian,
    calibrated_gaussian,
    component_weights,
    sample_gaussian,
    similarity_weights,
)
from cfer.core.composition import AUFeatureMap, component_pairs, compositional_prior
from cfer.core.imprinting import class_means
from cfer.core.prototypes import RandomProjectionRidge
from cfer.fewshot.learner import BaseSession, FewShotLearner
from cfer.taxonomy import get_category

__all__ = [
    "ComposeConfig",
    "ComposeLearner",
    "CRanPACConfig",
    "CRanPACLearner",
    "RanPACConfig",
    "RanPACLearner",
]

Prior = Literal["auto", "au", "components", "none"]


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
        generator = self._generator()
        samples, targets = [], []
        for index in range(num_new):
            output = self.num_classes + index
            gaussian = self._gaussian(support[labels == output], output)
            samples.append(sample_gaussian(gaussian, self.config.samples, generator))
            targets.append(torch.full((self.config.samples,), output, dtype=torch.int64))
        return torch.cat(samples), torch.cat(targets)

    def _gaussian(self, shots: Tensor, output: int) -> CalibratedGaussian:
        """The calibrated Gaussian of new output ``output`` from its shots (K, D)."""
        weights = similarity_weights(shots.mean(0, keepdim=True), self.base_means, self.config.softmax_temperature)[0]
        return calibrated_gaussian(shots, self.config.shift_weight, weights @ self.base_means, weights,
                                   self.base_rows, self.config.covariance_weight)


@dataclass(frozen=True)
class ComposeConfig(RanPACConfig):
    """cfer's compositional method: Gaussians calibrated toward each compound's own components."""

    # what the mean is pulled toward: 'au' the AU map at the compound's AUs, 'components' the components'
    # prototypes combined with `strength`, 'auto' the AU map when the data has AU intensities, 'none' nothing
    prior: Prior = "auto"
    prior_shots: float = 5.0  # κ: the prior counts as κ shots; the shots' mean weighs K / (K + κ)
    strength: float = 0.5  # s of the components' prior r + s((m1 - r) + (m2 - r)); 0.5 = their plain mean
    au_ridge: float = 1.0  # λ of the AU map (chosen on seed 0's validation subjects, zero-shot)
    # β: the components' share of the covariance (all of it below two shots). Chosen with prior_shots on seed
    # 0's validation subjects (examples/choose_fewshot_options.py): final harmonic mean K=1 / K=5 0.390 / 0.450
    # at β = 1, κ = 5; 0.390 / 0.434 at β = 0.5; 0.394 / 0.438 at κ = 10; 2000 samples 0.279 / 0.385
    covariance_weight: float = 1.0
    samples: int = 800  # pseudo-features per new class, in place of its shots (175 per base class: 0.229 / 0.330)


class ComposeLearner(CRanPACLearner):
    """Compounds learned from their components: the prior, the components' covariances, then the shots.

    Needs the base session's class names and each new class's name, a compound of
    :mod:`cfer.taxonomy` whose two components are basic classes of the base session.

    Raises:
        ValueError: If the prior is unknown, ``'au'`` is asked for without AU intensities, or the base
            session's classes are not named.
    """

    config: ComposeConfig  # type: ignore[assignment]

    def __init__(self, base: BaseSession, config: ComposeConfig, seed: int = 0) -> None:
        super().__init__(base, config, seed)  # type: ignore[arg-type]
        if not base.classes:
            raise ValueError("the compose method needs the base session's class names (BaseSession.classes)")
        if config.prior not in ("auto", "au", "components", "none"):
            raise ValueError(f"unknown prior {config.prior!r}; known: 'auto', 'au', 'components', 'none'")
        if config.prior == "au" and base.au_intensities is None:
            raise ValueError("prior='au' needs the data's AU intensities, and this data has none: "
                             "set method_options.compose.prior to 'components' (or 'auto')")
        self.prior = "au" if config.prior == "auto" and base.au_intensities is not None else (
            "components" if config.prior == "auto" else config.prior)
        self.au_map = AUFeatureMap(base.au_intensities, base.features, config.au_ridge) if self.prior == "au" else None
        self.au_ids = base.au_ids
        self.basic_classes = tuple(base.classes)

    def _gaussian(self, shots: Tensor, output: int) -> CalibratedGaussian:
        if self.class_names is None:
            raise ValueError("the compose method needs each new class's name: pass names= to learn()")
        name = self.class_names[output]
        try:
            category = get_category(name)
        except KeyError as error:
            raise ValueError(f"compose builds each new class from its two basic components, and {name!r} is not "
                             f"a compound of cfer.taxonomy ({error.args[0]})") from None
        pair = component_pairs([category.components], self.basic_classes)
        weights = component_weights(pair, self.num_base)[0]
        config = self.config
        if self.prior == "none":
            prior, shot_weight = shots.float().mean(0), 1.0
        else:
            prior, shot_weight = self._prior(category.aus, pair), len(shots) / (len(shots) + config.prior_shots)
        return calibrated_gaussian(shots, shot_weight, prior, weights, self.base_rows, config.covariance_weight)

    def _prior(self, aus: tuple[int, ...], pair: Tensor) -> Tensor:
        """The compound's mean before any of its images, shape (D,), from its AUs or its components ``pair`` (1, 2)."""
        if self.au_map is not None:
            return self.au_map(self.au_map.template([aus], self.au_ids))[0]
        return compositional_prior(self.base_means, pair, self.config.strength)[0]
