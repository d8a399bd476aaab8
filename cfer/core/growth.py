"""Growing a classifier's output layer by whole classes, as Maiden & Nakisa (2023) do.

The reference (github.com/AngusMaiden/complex-FER, ``src/models/train.py``,
``ContinualLearner.__init__``) copies the old kernel and bias of the last ``Dense`` layer,
initialises the new kernel column with ``GlorotUniform`` and the new bias with zero.
:func:`expand_linear` does the same for a :class:`torch.nn.Linear`; :func:`glorot_linear` builds a
layer initialised as a Keras ``Dense`` layer.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["expand_linear", "glorot_linear"]


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
