"""Growing an output layer by whole classes, against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cfer.core.growth import expand_linear, glorot_linear


def _linear(
    in_features: int = 5, out_features: int = 3, dtype: torch.dtype = torch.float32
) -> nn.Linear:
    torch.manual_seed(0)
    layer = nn.Linear(in_features, out_features, dtype=dtype)
    with torch.no_grad():
        layer.bias.uniform_(-1.0, 1.0)  # non-zero, so copying it is observable
    return layer


def test_expand_linear_keeps_old_logits_exactly() -> None:
    layer = _linear()
    features = torch.randn(7, 5)
    expanded = expand_linear(layer, 2)
    assert expanded.out_features == 5
    # weights are copied bit for bit; the logits only up to matmul blocking of a wider output
    assert torch.allclose(expanded(features)[:, :3], layer(features), rtol=0, atol=1e-6)
    assert torch.equal(expanded.weight[:3], layer.weight)
    assert torch.equal(expanded.bias[:3], layer.bias)


def test_expand_linear_new_units_are_glorot_uniform_with_zero_bias() -> None:
    layer = _linear(in_features=6)
    expanded = expand_linear(layer, 2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(expanded.bias[3:], torch.zeros(2))
    # reference draw: Xavier-uniform of a (num_new, in_features) tensor from the same seed
    expected = torch.empty(2, 6)
    nn.init.xavier_uniform_(expected, generator=torch.Generator().manual_seed(3))
    assert torch.equal(expanded.weight[3:], expected)
    bound = math.sqrt(6.0 / (6 + 2))
    assert expanded.weight[3:].abs().max() <= bound


def test_expand_linear_preserves_device_dtype_and_leaves_input_untouched() -> None:
    layer = _linear(dtype=torch.float64)
    weight_before = layer.weight.detach().clone()
    expanded = expand_linear(layer, 1)
    assert expanded.weight.dtype == torch.float64
    assert expanded.weight.device == layer.weight.device
    assert layer.out_features == 3
    assert torch.equal(layer.weight, weight_before)
    assert expanded.weight is not layer.weight


def test_expand_linear_rejects_negative_count() -> None:
    with pytest.raises(ValueError):
        expand_linear(_linear(), -1)


def test_glorot_linear_is_a_keras_dense_layer() -> None:
    layer = glorot_linear(4, 3, generator=torch.Generator().manual_seed(1))
    expected = torch.empty(3, 4)
    nn.init.xavier_uniform_(expected, generator=torch.Generator().manual_seed(1))
    assert torch.equal(layer.weight, expected)
    assert torch.equal(layer.bias, torch.zeros(3))
