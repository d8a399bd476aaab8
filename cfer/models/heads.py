"""Classifier heads whose output layer grows by one unit per new expression class.

Maiden & Nakisa (2023), "Complex Facial Expression Recognition Using Deep Knowledge
Distillation of Basic Features", add one output unit per compound expression. The reference
implementation (github.com/AngusMaiden/complex-FER, ``src/models/train.py``,
``ContinualLearner.__init__``) copies the old kernel and bias of the last ``Dense`` layer,
initialises the new kernel column with ``GlorotUniform`` and the new bias with zero
(:func:`cfer.core.growth.expand_linear`).

The heads know nothing of Avalanche: a continual strategy grows them through ``add_classes``
(``strategies.ClassifierExpansionPlugin`` does, for every registered strategy).
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from cfer.core.growth import expand_linear, glorot_linear
from cfer.registry import Registry

logger = logging.getLogger(__name__)

__all__ = [
    "ExpandableHead",
    "LinearHead",
    "PaperHead",
    "HEADS",
    "create_head",
    "register_head",
]


class ExpandableHead(nn.Module):
    """Base class of heads whose last layer ``fc`` grows by whole classes.

    Subclasses call ``super().__init__(in_features)``, build ``self.fc`` (an
    :class:`~torch.nn.Linear`) and implement ``forward``.
    The base class provides :meth:`add_classes` and :meth:`l2_penalty`.
    """

    fc: nn.Linear

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self._in_features = in_features

    @property
    def num_classes(self) -> int:
        """Number of output units (classes) of the head."""
        return self.fc.out_features

    @property
    def in_features(self) -> int:
        """Size of the feature vector the head expects."""
        return self._in_features

    def add_classes(self, num_new: int, generator: torch.Generator | None = None) -> None:
        """Add ``num_new`` output units; see :func:`expand_linear`.

        Args:
            num_new: Number of classes to add.
            generator: Random generator for the new rows; the global one if None.
        """
        if num_new == 0:
            return
        self.fc = expand_linear(self.fc, num_new, generator=generator)
        logger.info("head grew by %d to %d classes", num_new, self.num_classes)

    def l2_penalty(self) -> Tensor:
        """L2 regularisation term of the head, to add to the loss.

        Returns:
            Scalar tensor; zero for heads without regularised layers.
        """
        return self.fc.weight.new_zeros(())


class LinearHead(ExpandableHead):
    """Dropout followed by one growing Linear layer (Glorot-uniform weights, zero bias).

    Args:
        in_features: Size of the backbone's feature vector.
        num_classes: Initial number of classes.
        dropout: Dropout probability applied to the features.
    """

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__(in_features)
        self.dropout = nn.Dropout(dropout)
        self.fc = glorot_linear(in_features, num_classes)

    def forward(self, features: Tensor) -> Tensor:
        """Compute logits.

        Args:
            features: Backbone features, shape ``(batch, in_features)``.

        Returns:
            Logits, shape ``(batch, num_classes)``.
        """
        return self.fc(self.dropout(features))


class PaperHead(ExpandableHead):
    """The classification head of Maiden & Nakisa (2023).

    As ``build_basic_model`` in the reference (``src/models/train.py``): on top of the max-pooled
    ResNet50V2 features, ``Dropout(0.2) -> Dense(512, sigmoid) -> Dropout(0.2) ->
    Dense(32, sigmoid) -> Dropout(0.2) -> Dense(num_classes)``, with ``kernel_regularizer =
    l2(1e-5)`` on the two hidden ``Dense`` kernels only (not their biases, not the output layer).
    All layers use the Keras defaults, Glorot-uniform kernels and zero biases.

    Keras adds ``1e-5 * sum(w ** 2)`` per regularised kernel to the loss; :meth:`l2_penalty`
    returns exactly that sum, to add to the loss explicitly. It is not expressed as optimizer
    weight decay because the reference optimiser is Adam, for which an L2 loss term and decoupled
    weight decay differ. Note that the reference applies the penalty in the basic phase only:
    the custom ``ContinualLearner.train_step`` builds its loss without ``model.losses``.

    Args:
        in_features: Size of the backbone's feature vector.
        num_classes: Initial number of classes.
        hidden: Widths of the sigmoid hidden layers.
        dropout: Dropout probability before every Linear layer.
        l2: Coefficient of the L2 penalty on the hidden kernels.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (512, 32),
        dropout: float = 0.2,
        l2: float = 1e-5,
    ) -> None:
        super().__init__(in_features)
        self.l2 = l2
        layers: list[nn.Module] = []
        width = in_features
        for hidden_width in hidden:
            layers += [nn.Dropout(dropout), glorot_linear(width, hidden_width), nn.Sigmoid()]
            width = hidden_width
        layers.append(nn.Dropout(dropout))
        self.hidden = nn.Sequential(*layers)
        self.fc = glorot_linear(width, num_classes)

    def regularized_weights(self) -> list[nn.Parameter]:
        """Kernels that carry the L2 penalty (the hidden Linear weights).

        Returns:
            The weight parameters, one per hidden layer.
        """
        return [m.weight for m in self.hidden if isinstance(m, nn.Linear)]

    def l2_penalty(self) -> Tensor:
        """``l2 * sum(w ** 2)`` over the hidden kernels, as Keras ``l2(1e-5)`` adds it.

        Returns:
            Scalar tensor.
        """
        total = self.fc.weight.new_zeros(())
        for weight in self.regularized_weights():
            total = total + weight.pow(2).sum()
        return self.l2 * total

    def forward(self, features: Tensor) -> Tensor:
        """Compute logits.

        Args:
            features: Backbone features, shape ``(batch, in_features)``.

        Returns:
            Logits, shape ``(batch, num_classes)``.
        """
        return self.fc(self.hidden(features))


HeadFactory = Callable[..., ExpandableHead]

HEADS: Registry[HeadFactory] = Registry("head")
"""Head constructors by name, ``name -> callable(in_features, num_classes, **kwargs)``."""


def register_head(name: str, factory: HeadFactory) -> None:
    """Register a head constructor under ``name``.

    Args:
        name: Registry key.
        factory: Callable ``(in_features, num_classes, **kwargs) -> ExpandableHead``.

    Raises:
        ValueError: If ``name`` is already registered.
    """
    HEADS.register(name, factory)


register_head("linear", LinearHead)
register_head("paper", PaperHead)


def create_head(name: str, in_features: int, num_classes: int, **kwargs: object) -> ExpandableHead:
    """Build a registered head.

    Args:
        name: One of ``HEADS`` (``'linear'``, ``'paper'``).
        in_features: Size of the backbone's feature vector.
        num_classes: Initial number of classes.
        **kwargs: Forwarded to the head's constructor.

    Returns:
        The head.

    Raises:
        KeyError: If ``name`` is unknown; the message lists the known names.
    """
    return HEADS[name](in_features, num_classes, **kwargs)
