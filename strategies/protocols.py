"""The model interface the strategies rely on: every member a plugin calls is here."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor, nn

__all__ = ["GrowingClassifier"]


@runtime_checkable
class GrowingClassifier(Protocol):
    """A classifier whose output layer grows by whole classes.

    ``cfer.models.ExpressionClassifier`` (timm backbone + a head from ``cfer.models.heads``)
    satisfies it; so does any ``nn.Module`` with these members, e.g. a two-layer MLP (see the
    README's "use cfer's strategy in your own Avalanche script"). The plugins of this package call
    nothing else.

    Optional member, used only when present:

    * ``l2_penalty() -> Tensor``: a scalar regularisation term that ``HeadL2Plugin`` adds to the
      loss (the paper's ``l2(1e-5)`` on its head's hidden kernels).

    Attributes:
        backbone: Feature extractor, inputs ``(batch, ...)`` to features ``(batch, features)``;
            only ``'icarl'`` uses it (as Avalanche's ``feature_extractor``).
        head: Classifier on the features, features to logits ``(batch, num_classes)``; only
            ``'icarl'`` uses it (as Avalanche's ``classifier``).
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

    def __call__(self, inputs: Tensor) -> Tensor:
        """Logits ``(batch, num_classes)`` for ``inputs``."""
        ...
