"""cfer's compositional few-shot method: each compound learned from its components, then from its shots.

A compound expression is a blend of two known basic ones (Du et al. 2014; :mod:`cfer.taxonomy`), so before
its first image is seen it already has a mean: the **compositional prior** (:class:`CompoundPrior`), the AU
map of :class:`~cfer.core.composition.AUFeatureMap` at the compound's prototypical AUs where the data
carries AU intensities, else the components' prototypes combined
(:func:`~cfer.core.composition.compositional_prior`). Its K shots then move it as a conjugate-normal
posterior mean with the prior worth ``κ`` shots:

    p = K / (K + κ) · mean(shots) + κ / (K + κ) · prior,

so one shot moves the prototype less than five, and none leaves the prior (zero-shot).

Two classifiers carry it (both registered):

* ``compose``: a cosine classifier of class means (the base rows are the basic classes' training means,
  as TEEN's), the new row ``p``; no sampling, no solve (chosen on seed 0's validation subjects);
* ``compose-ranpac``: RanPAC's head, into which 800 samples of the compound's Gaussian go, with mean ``p``
  and the covariance of its two components (C-RanPAC's calibration, toward the compound's own components
  instead of toward look-alikes, :class:`~cfer.fewshot.ranpac.CRanPACLearner`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from cfer.core.calibration import CalibratedGaussian, calibrated_gaussian, component_weights
from cfer.core.composition import AUFeatureMap, component_pairs, compositional_prior
from cfer.core.imprinting import CosineClassifier, class_means
from cfer.fewshot.learner import BaseSession, FewShotLearner
from cfer.fewshot.ranpac import CRanPACLearner, RanPACConfig
from cfer.taxonomy import Category, get_category

__all__ = ["ComposeConfig", "ComposeLearner", "ComposeRanPACConfig", "ComposeRanPACLearner", "CompoundPrior",
           "shrunk_mean"]

Prior = Literal["auto", "au", "components", "none"]
PRIORS = ("auto", "au", "components", "none")


class CompoundPrior:
    """Each compound's mean before any of its images, from the base session.

    Args:
        base: The base session; its ``classes`` must be named, and ``au_intensities`` given for ``'au'``.
        prior: ``'au'`` the AU map at the compound's AUs, ``'components'`` the components' prototypes
            ``r + s((m_1 − r) + (m_2 − r))``, ``'auto'`` the AU map where the data has AU intensities,
            ``'none'`` no prior (the shots alone).
        strength: ``s`` of the components' prior; 0.5 is the plain mean of the two prototypes.
        au_ridge: ``λ`` of the AU map.

    Raises:
        ValueError: If the prior is unknown, the classes are not named, or ``'au'`` lacks AU intensities.
    """

    def __init__(self, base: BaseSession, prior: Prior = "auto", strength: float = 0.5, au_ridge: float = 1.0) -> None:
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}; known: {list(PRIORS)}")
        if not base.classes:
            raise ValueError("the compose methods need the base session's class names (BaseSession.classes)")
        if prior == "au" and base.au_intensities is None:
            raise ValueError("prior='au' needs the data's AU intensities, and this data has none: "
                             "set the method's prior option to 'components' (or 'auto')")
        has_aus = base.au_intensities is not None
        self.kind = ("au" if has_aus else "components") if prior == "auto" else prior
        self.basic_classes, self.strength = tuple(base.classes), strength
        self.means = class_means(base.features.float(), base.labels, base.num_classes)
        self.au_map = AUFeatureMap(base.au_intensities, base.features, au_ridge) if self.kind == "au" else None
        self.au_ids = base.au_ids

    def components(self, name: str) -> tuple[Category, Tensor]:
        """The compound's category and its two components as base outputs, shape (1, 2).

        Raises:
            ValueError: If ``name`` is not a compound of :mod:`cfer.taxonomy` with both components in the base.
        """
        try:
            category = get_category(name)
        except KeyError as error:
            raise ValueError(f"compose builds each new class from its two basic components, and {name!r} is not "
                             f"a compound of cfer.taxonomy ({error.args[0]})") from None
        return category, component_pairs([category.components], self.basic_classes)

    def __call__(self, name: str) -> Tensor | None:
        """The prior mean of compound ``name``, shape (D,); None for ``'none'``."""
        category, pair = self.components(name)
        if self.kind == "none":
            return None
        if self.au_map is not None:
            return self.au_map(self.au_map.template([category.aus], self.au_ids))[0]
        return compositional_prior(self.means, pair, self.strength)[0]


def shrunk_mean(shots: Tensor, prior: Tensor | None, prior_shots: float) -> Tensor:
    """``K / (K + κ) · mean(shots) + κ / (K + κ) · prior``, shape (D,), for shots (K, D); the shots' mean
    without a prior, the prior without shots."""
    if prior is None:
        return shots.float().mean(0)
    if len(shots) == 0:
        return prior.float()
    weight = len(shots) / (len(shots) + prior_shots)
    return weight * shots.float().mean(0) + (1 - weight) * prior.float()


FeatureKind = Literal["pooled", "layers"]
"""Which features of the basic backbone a method reads (see ``cfer.fewshot.runner``)."""


@dataclass(frozen=True)
class ComposeConfig:
    """cfer's compositional method on a cosine classifier of class means."""

    prior: Prior = "auto"  # what a compound's prototype starts from (see CompoundPrior)
    # κ: the prior counts as κ shots. Seed 0's validation subjects (examples/choose_fewshot_options.py), final
    # harmonic mean K=1 / K=5: κ=2 0.375 / 0.405, 5 0.425 / 0.440, 10 0.425 / 0.453, 20 0.414 / 0.435
    prior_shots: float = 10.0
    strength: float = 0.5  # s of the components' prior; 0.5 = their plain mean
    au_ridge: float = 1.0  # λ of the AU map (chosen on seed 0's validation subjects, zero-shot)
    # the features it reads: 'layers', the pooled features and the last three block stages' maps on grids
    # (cfer.core.layers), or the 'pooled' features alone. Seed 0's validation subjects, K=1 / K=5:
    # pooled 0.425 / 0.453, layers 0.463 / 0.461. FSCIL only: the paper protocol reads the pooled features.
    features: FeatureKind = "layers"


class ComposeLearner(FewShotLearner):
    """Compounds as prototypes that start at their compositional prior and move toward their shots.

    Needs the base session's class names and each new class's name (``learn(..., names=...)``).
    """

    def __init__(self, base: BaseSession, config: ComposeConfig, seed: int = 0) -> None:
        super().__init__(base, seed)
        self.config = config
        self.prior = CompoundPrior(base, config.prior, config.strength, config.au_ridge)
        self.classifier = CosineClassifier(self.prior.means)

    def _learn(self, support: Tensor, labels: Tensor, num_new: int) -> None:
        rows = [shrunk_mean(support[labels == output], self.prior(_class_name(self, output)), self.config.prior_shots)
                for output in range(self.num_classes, self.num_classes + num_new)]
        self.classifier.append(torch.stack(rows))

    @torch.no_grad()
    def logits(self, features: Tensor) -> Tensor:
        return self.classifier(features.float())


@dataclass(frozen=True)
class ComposeRanPACConfig(RanPACConfig):
    """The compositional prior on RanPAC's head, through sampled Gaussians."""

    prior: Prior = "auto"
    prior_shots: float = 5.0  # κ (seed 0's validation subjects: 0.390 / 0.434 at 5, 0.394 / 0.439 at 10, 2 worse)
    strength: float = 0.5
    au_ridge: float = 1.0
    # β: the components' share of the covariance (all of it below two shots). Seed 0's validation subjects:
    # 0.390 / 0.450 at β = 1, 0.390 / 0.434 at β = 0.5; 2000 samples 0.279 / 0.385, 175 samples 0.229 / 0.330
    covariance_weight: float = 1.0
    samples: int = 800  # pseudo-features per new class, in place of its shots


class ComposeRanPACLearner(CRanPACLearner):
    """C-RanPAC's sampled Gaussians, calibrated toward each compound's components and prior."""

    config: ComposeRanPACConfig  # type: ignore[assignment]

    def __init__(self, base: BaseSession, config: ComposeRanPACConfig, seed: int = 0) -> None:
        super().__init__(base, config, seed)  # type: ignore[arg-type]
        self.prior = CompoundPrior(base, config.prior, config.strength, config.au_ridge)

    def _gaussian(self, shots: Tensor, output: int) -> CalibratedGaussian:
        name = _class_name(self, output)
        _, pair = self.prior.components(name)
        prior = self.prior(name)
        weight = 1.0 if prior is None else len(shots) / (len(shots) + self.config.prior_shots)
        return calibrated_gaussian(shots, weight, shots.float().mean(0) if prior is None else prior,
                                   component_weights(pair, self.num_base)[0], self.base_rows,
                                   self.config.covariance_weight)


def _class_name(learner: FewShotLearner, output: int) -> str:
    if learner.class_names is None:
        raise ValueError("the compose methods need each new class's name: pass names= to learn()")
    return learner.class_names[output]
