"""Training-free baselines as Avalanche strategies: a frozen backbone and a head of accumulated statistics.

``'ncm'`` (SimpleCIL's nearest class mean) and ``'ranpac'`` (RanPAC's random-projection ridge head)
learn nothing by gradient after the basic phase: each training experience's samples go through the
frozen backbone once and update the head's statistics (:mod:`cfer.core.prototypes`). They run on
Avalanche's ``Naive`` template with zero epochs, so the runner, the evaluation plugin and the loggers
treat them like every other strategy.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from avalanche.core import SupervisedPlugin
from torch import Tensor, nn

from cfer.core.inference import predict
from cfer.core.layers import MultiLayerFeatures
from cfer.core.prototypes import ClassMeans, RandomProjectionRidge

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate

__all__ = ["FrozenFeatureClassifier", "StatisticsHeadPlugin", "feature_dim_of"]

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


class StatisticsHeadPlugin(SupervisedPlugin):
    """After each training experience, pass its samples through the frozen backbone into the head.

    A :class:`~cfer.core.layers.MultiLayerFeatures` backbone fits its standardisation on the first
    experience, before the head sees it. A :class:`RandomProjectionRidge` head chooses its ridge
    ``λ`` on the first experience with more than one class (RanPAC picks it on held-out training samples; later experiences hold one class
    each here, which says nothing about ``λ``), unless ``ridge`` was given.

    Args:
        choose_ridge: Whether a ridge head still has to choose its ``λ``.
    """

    def __init__(self, choose_ridge: bool = True) -> None:
        super().__init__()
        self.choose_ridge = choose_ridge

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
        model.head.update(features, labels)
        if isinstance(model.head, RandomProjectionRidge) and self.choose_ridge and len(labels.unique()) > 1:
            ridge = model.head.choose_ridge(features, labels)
            self.choose_ridge = False
            logger.info("RanPAC: ridge lambda %.0e chosen on held-out samples of the first experience", ridge)
