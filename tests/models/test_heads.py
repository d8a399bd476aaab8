"""Tests of the growing classifier heads."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from cfer.models.heads import (
    HEADS,
    LinearHead,
    PaperHead,
    create_head,
    expand_linear,
)


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


@pytest.mark.parametrize("name", sorted(HEADS))
def test_add_classes_keeps_old_logits_and_counts_classes(name: str) -> None:
    torch.manual_seed(0)
    head = create_head(name, in_features=8, num_classes=3).eval()
    features = torch.randn(4, 8)
    before = head(features)
    head.add_classes(2)
    after = head(features)
    assert head.num_classes == 5
    assert after.shape == (4, 5)
    assert torch.allclose(after[:, :3], before, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_adaptation_grows_to_cover_training_labels_only(name: str) -> None:
    head = create_head(name, in_features=8, num_classes=2)
    head.train()
    head.adaptation(SimpleNamespace(classes_in_this_experience={2, 3}))
    assert head.num_classes == 4
    head.adaptation(SimpleNamespace(classes_in_this_experience={1}))
    assert head.num_classes == 4
    head.eval()
    head.adaptation(SimpleNamespace(classes_in_this_experience={6}))
    assert head.num_classes == 4


def test_paper_head_matches_hand_written_forward() -> None:
    torch.manual_seed(0)
    head = PaperHead(in_features=10, num_classes=3, hidden=(6, 4)).eval()
    features = torch.randn(5, 10)
    first, second = [m for m in head.hidden if isinstance(m, nn.Linear)]
    hidden = torch.sigmoid(features @ first.weight.T + first.bias)
    hidden = torch.sigmoid(hidden @ second.weight.T + second.bias)
    expected = hidden @ head.fc.weight.T + head.fc.bias
    assert torch.allclose(head(features), expected, atol=1e-6)
    dropouts = [m for m in head.hidden if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 3 and all(m.p == 0.2 for m in dropouts)


def test_paper_head_initialises_biases_to_zero() -> None:
    head = PaperHead(in_features=10, num_classes=3)
    for module in head.modules():
        if isinstance(module, nn.Linear):
            assert torch.equal(module.bias, torch.zeros_like(module.bias))


def test_paper_head_l2_penalty_covers_hidden_kernels_only() -> None:
    torch.manual_seed(0)
    head = PaperHead(in_features=10, num_classes=3, hidden=(6, 4))
    first, second = [m for m in head.hidden if isinstance(m, nn.Linear)]
    expected = 1e-5 * ((first.weight**2).sum() + (second.weight**2).sum())
    assert torch.allclose(head.l2_penalty(), expected)
    with torch.no_grad():
        head.fc.weight.mul_(10.0)
        first.bias.add_(3.0)
    assert torch.allclose(head.l2_penalty(), expected)


def test_linear_head_has_no_penalty() -> None:
    head = LinearHead(in_features=4, num_classes=2)
    assert head.l2_penalty().item() == 0.0


def test_create_head_unknown_name_lists_known_names() -> None:
    with pytest.raises(KeyError) as error:
        create_head("mlp", 4, 2)
    for name in ("linear", "paper"):
        assert name in str(error.value)
