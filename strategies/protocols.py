"""The model interface the strategies rely on."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor, nn

__all__ = ["GrowingClassifier"]


@runtime_checkable
class GrowingClassifier(Protocol):
    """A classifier whose output layer grows by whole classes.

    ``cfer.models.ExpressionClassifier`` (timm backbone + a head from ``cfer.models.heads``)
    satisfies it; any ``nn.Module`` with these members works with the plugins of this package.

    Attributes:
        backbone: Feature extractor, images ``(batch, channels, height, width)`` to features
            ``(batch, features)``.
        head: Classifier on the features, features to logits ``(batch, num_classes)``.
    """

    backbone: nn.Module
    head: nn.Module

    @property
    def num_classes(self) -> int:
        """Current number of output units."""
        ...

    def add_classes(self, num_new: int) -> None:
        """Append ``num_new`` output units, keeping the old ones unchanged."""
        ...

    def __call__(self, images: Tensor) -> Tensor:
        """Logits ``(batch, num_classes)`` for ``images``."""
        ...
