"""Backbone features computed once per image, for everything that keeps the backbone frozen.

With a frozen backbone in eval mode an image always maps to the same feature vector, so the
episodic evaluation (hundreds of episodes) and the head-only paper protocol run on a
:class:`FeatureSet` instead of re-running the CNN: one forward pass per image in all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from cfer.core.inference import predict
from cfer.data.dataset import FaceExpressionDataset, Indices
from cfer.training.augment import make_preprocess

__all__ = ["FeatureSet", "extract_features"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSet:
    """Feature vectors with the labels and subjects of the images they came from.

    Attributes:
        features: Shape (N, feature_dim), float32.
        targets: Class indices into ``classes``, shape (N,), int64.
        subject_ids: Subject of each sample, shape (N,), int64.
        classes: Class names.
        au_intensities: The images' action-unit intensities, shape (N, A); None when the data has none.
        au_ids: The FACS number of each column of ``au_intensities``.
    """

    features: Tensor
    targets: Tensor
    subject_ids: Tensor
    classes: tuple[str, ...]
    au_intensities: Tensor | None = None
    au_ids: tuple[int, ...] = ()

    def __len__(self) -> int:
        return self.features.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        """``(feature vector (feature_dim,), class index)``, so a DataLoader can batch episodes."""
        return self.features[index], int(self.targets[index])

    def subset(self, indices: Indices) -> FeatureSet:
        """Samples at ``indices`` (positions, shape (M,), or a boolean mask, shape (N,))."""
        index = torch.as_tensor(np.asarray(indices) if not isinstance(indices, Tensor) else indices)
        if index.dtype == torch.bool:
            index = torch.nonzero(index).flatten()
        index = index.to(torch.int64)
        aus = None if self.au_intensities is None else self.au_intensities[index]
        return FeatureSet(self.features[index], self.targets[index], self.subject_ids[index], self.classes, aus,
                          self.au_ids)


@torch.no_grad()
def extract_features(
    features: Callable[[Tensor], Tensor] | nn.Module,
    dataset: FaceExpressionDataset,
    mean: tuple[float, ...] | list[float],
    std: tuple[float, ...] | list[float],
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> FeatureSet:
    """Runs a frozen feature extractor once over every image.

    Args:
        features: Maps normalised images (B, 3, H, W) to features (B, feature_dim), e.g.
            ``model.features`` of an :class:`~cfer.models.classifier.ExpressionClassifier` in
            eval mode.
        dataset: The images, uint8 (N, 3, H, W).
        mean: Per-channel normalisation mean, for pixels in [0, 1] (the backbone's data config).
        std: Per-channel normalisation std.
        batch_size: Images per forward pass.
        device: Where to compute.

    Returns:
        The features on the CPU, with the dataset's targets, subjects, classes and AU intensities.
    """
    stacked = predict(features, dataset.images, batch_size, device, preprocess=make_preprocess(mean, std)).float()
    logger.info("extracted %s features of %d images", tuple(stacked.shape[1:]), len(dataset))
    aus = None if dataset.au_intensities is None else dataset.au_intensities.float().clone()
    return FeatureSet(stacked, dataset.targets.clone(), dataset.subject_ids.clone(), tuple(dataset.classes), aus,
                      tuple(dataset.au_ids))
