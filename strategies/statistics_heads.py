"""Training-free baselines as Avalanche strategies: a frozen backbone and a head of accumulated statistics.

``'ncm'`` (SimpleCIL's nearest class mean) and ``'ranpac'`` (RanPAC's random-projection ridge head)
learn nothing by gradient after the basic phase: each training experience's samples go through the
frozen backbone once and update the head's statistics (:mod:`cfer.core.prototypes`). They run on
Avalanche's ``Naive`` template with zero epochs, so the runner, the evaluation plugin and the loggers
treat them like every other strategy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from avalanche.core import SupervisedPlugin
from torch import Tensor, nn

from cfer.core.calibration import calibrated_gaussian, component_weights, sample_classes, similarity_weights
from cfer.core.inference import predict
from cfer.core.layers import MultiLayerFeatures
from cfer.core.prototypes import ClassMeans, RandomProjectionRidge

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate

__all__ = ["FrozenFeatureClassifier", "GaussianCalibration", "StatisticsHeadPlugin", "feature_dim_of"]

logger = logging.getLogger(__name__)


class FrozenFeatureClassifier(nn.Module):
    """A frozen backbone followed by a statistics head (:class:`ClassMeans`, :class:`RandomProjectionRidge`).

    Its head grows with the labels it is updated with, so ``add_classes`` has nothing to do.

    Args:
        backbone: Maps inputs to features ``(batch, feature_dim)``; never trained.
        head: The statistics head.
    """

    def __init__(self, backbone: nn.Module, head: ClassMeans | RandomProjectionRidge) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    @property
    def num_classes(self) -> int:
        """Classes the head has statistics for."""
        return self.head.num_classes

    def add_classes(self, num_new: int) -> None:
        """Nothing to do: the head grows when it is updated."""

    def forward(self, inputs: Tensor) -> Tensor:
        """Scores ``(batch, num_classes)``."""
        return self.head(self.backbone(inputs))


def feature_dim_of(model: nn.Module) -> int:
    """The size of the features a :class:`~strategies.protocols.GrowingClassifier`'s head takes.

    Raises:
        ValueError: If the head does not say (no ``in_features``).
    """
    size = getattr(model.head, "in_features", None)
    if size is None:
        raise ValueError("the model's head has no in_features: the training-free strategies cannot size their head")
    return int(size)


class GaussianCalibration:
    """C-RanPAC's calibration (Goswami et al. 2024) of each class after the first experience's.

    The first experience's features are kept, per class: the base classes. Every later class's
    features are replaced by ``samples`` draws of the Gaussian with mean ``α·μ + (1 − α)·Σ_j w_j μ_j`` and
    covariance ``β·Σ_j w_j Σ_j + (1 − β)·Σ`` (:func:`cfer.core.calibration.calibrated_gaussian`), where
    ``μ, Σ`` are the class's own. The weights ``w`` over the base classes are C-RanPAC's
    ``softmax(τ · cos(μ, μ_j))``, or, given ``components``, ½ on each of the class's two components.

    Args:
        shift_weight: ``α``, the class's own share of the mean.
        softmax_temperature: ``τ`` of the similarity weights.
        covariance_weight: ``β``, the base classes' share of the covariance.
        samples: Draws per class, in place of its features.
        seed: Seeds the draws of an experience, with its first new output (a resumed run draws the same).
        components: The two base outputs of each later output; None weights by similarity.
    """

    def __init__(self, shift_weight: float = 0.9, softmax_temperature: float = 16.0, covariance_weight: float = 0.5,
                 samples: int = 800, seed: int = 0, components: Mapping[int, tuple[int, int]] | None = None) -> None:
        self.shift_weight, self.softmax_temperature = shift_weight, softmax_temperature
        self.covariance_weight, self.samples, self.seed = covariance_weight, samples, seed
        self.components = None if components is None else dict(components)
        self.base_rows: list[Tensor] = []  # (n_j, D) features of each base class, by output

    def fit(self, features: Tensor, labels: Tensor) -> None:
        """Keep the base classes' features ``(n, D)`` (labels ``(n,)``, outputs 0 to C_base − 1)."""
        features, labels = features.float().cpu(), labels.cpu()
        self.base_rows = [features[labels == j] for j in range(int(labels.max()) + 1)]

    def __call__(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Samples ``(C_new · samples, D)`` and their labels in place of new classes' features ``(n, D)``.

        Raises:
            ValueError: Before :meth:`fit`, or for an output without components when they weight.
        """
        if not self.base_rows:
            raise ValueError("the calibration has no base classes yet: fit it on the first experience")
        features, labels = features.float().cpu(), labels.cpu()
        means = torch.stack([rows.mean(0) for rows in self.base_rows])
        gaussians = []
        for output in labels.unique().tolist():
            shots = features[labels == output]
            weights = self._weights(shots, int(output), means)
            gaussians.append((int(output), calibrated_gaussian(shots, self.shift_weight, weights @ means, weights,
                                                               self.base_rows, self.covariance_weight)))
        generator = torch.Generator().manual_seed(self.seed * 7919 + int(labels.min()))
        return sample_classes(gaussians, self.samples, generator)

    def _weights(self, shots: Tensor, output: int, means: Tensor) -> Tensor:
        if self.components is None:
            return similarity_weights(shots.mean(0, keepdim=True), means, self.softmax_temperature)[0]
        if output not in self.components:
            raise ValueError(f"output {output} has no components to calibrate toward; only compound classes have")
        return component_weights(torch.tensor([self.components[output]]), len(means))[0]


class StatisticsHeadPlugin(SupervisedPlugin):
    """After each training experience, pass its samples through the frozen backbone into the head.

    A :class:`~cfer.core.layers.MultiLayerFeatures` backbone fits its standardisation on the first
    experience, before the head sees it. A :class:`RandomProjectionRidge` head chooses its ridge
    ``λ`` on the first experience with more than one class (RanPAC picks it on held-out training samples; later experiences hold one class
    each here, which says nothing about ``λ``), unless ``ridge`` was given.

    With a :class:`GaussianCalibration`, the first experience fits it, and every later experience's
    features go into the head as its calibrated samples.

    Args:
        choose_ridge: Whether a ridge head still has to choose its ``λ``.
        calibration: Replaces each later experience's features by calibrated samples; None keeps them.
        ridge_scored: Images of other subjects (the validation split) whose classes' share scores
            each ``λ``, the head fitted on all of the experience; None scores a random fifth of the
            experience, fitted on the rest, as RanPAC does.
    """

    def __init__(self, choose_ridge: bool = True, calibration: GaussianCalibration | None = None,
                 ridge_scored: Any = None) -> None:
        super().__init__()
        self.choose_ridge = choose_ridge
        self.calibration = calibration
        self.ridge_scored = ridge_scored

    @torch.no_grad()
    def after_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        model: FrozenFeatureClassifier = strategy.model
        data = strategy.experience.dataset.eval()
        features = predict(model.backbone, data, strategy.eval_mb_size, strategy.device, out_device=strategy.device)
        if isinstance(model.backbone, MultiLayerFeatures) and not bool(model.backbone.fitted):
            model.backbone.fit(features)  # unfitted, it gave the raw features
            features = model.backbone.standardise(features)
            logger.info("multi-layer features: %d columns standardised on the first experience", model.backbone.dim)
        labels = torch.as_tensor(list(data.targets), dtype=torch.long, device=strategy.device)
        if self.calibration is not None and not self.calibration.base_rows:
            self.calibration.fit(features, labels)
        elif self.calibration is not None:
            features, labels = (tensor.to(strategy.device) for tensor in self.calibration(features, labels))
        model.head.update(features, labels)
        if isinstance(model.head, RandomProjectionRidge) and self.choose_ridge and len(labels.unique()) > 1:
            ridge = model.head.choose_ridge(features, labels, scored=self._scored(strategy, labels.unique()))
            self.choose_ridge = False
            logger.info("RanPAC: ridge lambda %.0e chosen on %s of the first experience's classes", ridge,
                        "held-out samples" if self.ridge_scored is None else "the validation subjects")

    def _scored(self, strategy: SupervisedTemplate, classes: Tensor) -> tuple[Tensor, Tensor] | None:
        """The validation subjects' features and labels of ``classes``, or None without ``ridge_scored``."""
        if self.ridge_scored is None:
            return None
        targets = torch.as_tensor(list(self.ridge_scored.targets), dtype=torch.long)
        rows = torch.isin(targets, classes.cpu()).nonzero().flatten()
        if len(rows) == 0:
            raise ValueError("ridge_on='validation', but the validation split holds none of the first experience's "
                             "classes; give the basic phase a val_fraction above 0, or use ridge_on='training'")
        data = self.ridge_scored.eval().subset(rows.tolist())
        features = predict(strategy.model.backbone, data, strategy.eval_mb_size, strategy.device,
                           out_device=strategy.device)
        return features, targets[rows].to(strategy.device)
