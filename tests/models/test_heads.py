"""Tests of the growing classifier heads."""

from __future__ import annotations


import pytest
import torch
from torch import nn

from cfer.models.heads import HEADS, LinearHead, PaperHead, create_head


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
