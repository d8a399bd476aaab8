"""Classifier heads whose output layer grows by one unit per new expression class.

Maiden & Nakisa (2023), "Complex Facial Expression Recognition Using Deep Knowledge
Distillation of Basic Features", add one output unit per compound expression. The reference
implementation (github.com/AngusMaiden/complex-FER, ``src/models/train.py``,
``ContinualLearner.__init__``) copies the old kernel and bias of the last ``Dense`` layer,
initialises the new kernel column with ``GlorotUniform`` and the new bias with zero.
:func:`expand_linear` does the same for a :class:`torch.nn.Linear`.

Both heads are Avalanche :class:`~avalanche.models.DynamicModule` s, so any Avalanche strategy
grows them before a training experience that brings labels beyond the current output size,
and then registers the new parameters with the optimizer (``make_optimizer`` runs right after
model adaptation in ``BatchObservation.check_model_and_optimizer``).
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import torch
from avalanche.benchmarks.scenarios import CLExperience
from avalanche.models import DynamicModule
from torch import Tensor, nn

logger = logging.getLogger(__name__)

__all__ = [
    "ExpandableHead",
    "LinearHead",
    "PaperHead",
    "HEADS",
    "create_head",
    "expand_linear",
    "glorot_linear",
    "register_head",
]


def glorot_linear(
    in_features: int,
    out_features: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Linear:
    """Build a Linear layer initialised as a Keras ``Dense`` layer: Glorot-uniform, zero bias.

    Args:
        in_features: Size of each input sample.
        out_features: Number of output units.
        generator: Random generator for the weights; the global one if None.
        device: Device of the parameters.
        dtype: Data type of the parameters.

    Returns:
        The initialised layer; ``weight`` has shape ``(out_features, in_features)``.
    """
    layer = nn.Linear(in_features, out_features, device=device, dtype=dtype)
    with torch.no_grad():
        nn.init.xavier_uniform_(layer.weight, generator=generator)
        layer.bias.zero_()
    return layer


@torch.no_grad()
def expand_linear(
    layer: nn.Linear, num_new: int, generator: torch.Generator | None = None
) -> nn.Linear:
    """Return a copy of ``layer`` with ``num_new`` extra output units.

    Old rows of the weight and old bias entries are copied exactly, so the logits of the old
    classes are unchanged. New rows are Glorot(Xavier)-uniform with fan-in ``in_features`` and
    fan-out ``num_new``: the reference draws the new kernel column with
    ``GlorotUniform()(shape=(in_features, 1))``, i.e. fan-out 1 for one new class. New biases
    are zero.

    Args:
        layer: Layer to expand; it is not modified.
        num_new: Number of output units to add; 0 returns a copy.
        generator: Random generator for the new rows; the global one if None.

    Returns:
        A new layer with ``out_features = layer.out_features + num_new`` on the same device and
        dtype, with the same ``requires_grad`` flags.

    Raises:
        ValueError: If ``num_new`` is negative or ``layer`` has no bias.
    """
    if num_new < 0:
        raise ValueError(f"num_new must be >= 0, got {num_new}")
    if layer.bias is None:
        raise ValueError("expand_linear needs a layer with a bias")
    weight, bias = layer.weight, layer.bias
    new_rows = torch.empty(num_new, layer.in_features, device=weight.device, dtype=weight.dtype)
    if num_new > 0:
        nn.init.xavier_uniform_(new_rows, generator=generator)
    expanded = nn.Linear(
        layer.in_features,
        layer.out_features + num_new,
        device=weight.device,
        dtype=weight.dtype,
    )
    expanded.weight.copy_(torch.cat([weight, new_rows], dim=0))
    expanded.bias.copy_(torch.cat([bias, bias.new_zeros(num_new)], dim=0))
    expanded.weight.requires_grad_(weight.requires_grad)
    expanded.bias.requires_grad_(bias.requires_grad)
    return expanded


class ExpandableHead(DynamicModule):
    """Base class of heads whose last layer ``fc`` grows by whole classes.

    Subclasses call ``super().__init__(in_features)``, build ``self.fc`` (an
    :class:`~torch.nn.Linear`) and implement ``forward``.
    The base class provides :meth:`add_classes`, the Avalanche :meth:`adaptation` hook and
    :meth:`l2_penalty`.

    Avalanche calls :meth:`adaptation` before every training *and* evaluation experience. The
    head grows only in training mode: growing while evaluating a stream that contains future
    classes would add units that the teacher snapshot of the distillation plugin then carries
    as random logits instead of the zero padding of the reference. Evaluate on the experiences
    seen so far (as the reference validates on the classes seen so far); a cross-entropy loss
    metric on labels beyond ``num_classes`` fails.
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

    def adaptation(self, experience: CLExperience) -> None:
        """Grow to cover the labels of a training experience (Avalanche model adaptation).

        Args:
            experience: Experience exposing ``classes_in_this_experience``.
        """
        super().adaptation(experience)
        if not self.training:
            return
        # labels index output units; when labels are numbered in order of arrival
        # (class_order 0, 1, 2, ...), covering the largest one adds one unit per new class
        needed = max(experience.classes_in_this_experience) + 1
        if needed > self.num_classes:
            self.add_classes(needed - self.num_classes)

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

HEADS: dict[str, HeadFactory] = {}
"""Registry of head constructors, ``name -> callable(in_features, num_classes, **kwargs)``."""


def register_head(name: str, factory: HeadFactory) -> None:
    """Register a head constructor under ``name``.

    Args:
        name: Registry key.
        factory: Callable ``(in_features, num_classes, **kwargs) -> ExpandableHead``.

    Raises:
        ValueError: If ``name`` is already registered.
    """
    if name in HEADS:
        raise ValueError(f"head {name!r} is already registered")
    HEADS[name] = factory


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
    try:
        factory = HEADS[name]
    except KeyError:
        raise KeyError(f"unknown head {name!r}; known heads: {sorted(HEADS)}") from None
    return factory(in_features, num_classes, **kwargs)
