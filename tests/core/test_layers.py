"""Multi-layer grid features against a hand computation; layer names and their errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cfer.core.layers import MultiLayerFeatures, parse_layer, resolve_module


class _Net(nn.Module):
    """Two blocks and a pooled output, like a timm backbone with num_classes=0."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.Conv2d(2, 3, 3, stride=2, padding=1))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(self.blocks(images))


def test_features_are_the_pooled_output_then_each_map_on_its_grid() -> None:
    torch.manual_seed(0)
    net, images = _Net(), torch.randn(2, 3, 8, 8)
    features = MultiLayerFeatures(net, ["blocks.0:2", "blocks.-1:1"])
    first = net.blocks[0](images)  # (2, 2, 8, 8)
    second = net.blocks[1](first)  # (2, 3, 4, 4)
    # a 2 x 2 grid of an 8 x 8 map: the means of its four 4 x 4 quarters, channel by channel, row by row
    quarters = torch.stack([first[:, :, r:r + 4, c:c + 4].mean((2, 3)) for r in (0, 4) for c in (0, 4)], 2)
    expected = torch.cat([second.mean((2, 3)), quarters.flatten(1), second.mean((2, 3))], 1)
    assert features.dim == 3 + 2 * 4 + 3
    torch.testing.assert_close(features(images), expected)  # before fit: no standardisation


def test_standardisation_uses_the_fitted_samples_only() -> None:
    torch.manual_seed(0)
    features = MultiLayerFeatures(_Net(), ["blocks.0:1"])
    first, later = torch.randn(6, 3, 8, 8), torch.randn(3, 3, 8, 8)
    raw = features.raw(first)
    features.fit(raw)
    torch.testing.assert_close(features(first).mean(0), torch.zeros(features.dim), atol=1e-5, rtol=0)
    torch.testing.assert_close(features(first).std(0), torch.ones(features.dim), atol=1e-4, rtol=0)
    torch.testing.assert_close(features(later), (features.raw(later) - raw.mean(0)) / raw.std(0))
    with pytest.raises(ValueError, match="two samples"):
        features.fit(raw[:1])


def test_a_column_that_barely_varies_is_floored_at_a_tenth_of_its_groups_mean_spread() -> None:
    torch.manual_seed(0)
    features = MultiLayerFeatures(_Net(), ["blocks.0:2"])  # groups: pooled (3 columns), then 2 x 2 x 2 = 8
    assert features.group_sizes == (3, 8)
    raw = torch.randn(20, 11) * torch.tensor([1.0, 2.0, 1.0] + [4.0] * 8)
    raw[:, 2] = 5.0  # never varies: a channel the fitted classes never switch on
    raw[:, 7] = 3.0 + 1e-4 * torch.randn(20)  # barely varies
    features.fit(raw)
    spread = raw.std(0)
    expected = spread.clone()
    expected[2] = 0.1 * spread[:3].mean()  # (std₀ + std₁ + 0) / 3 / 10
    expected[7] = 0.1 * spread[3:].mean()
    torch.testing.assert_close(features.std, expected)
    later = raw[:1].clone()
    later[0, 2] = 5.5  # the first face that switches the column on
    assert abs(float(features.standardise(later)[0, 2])) < 10  # 0.5 / (0.1 · mean), not 0.5 / 1e-6
    features.fit(torch.ones(4, 11))  # a group that never varies at all divides by 1e-6, not by 0
    assert torch.all(features.std == 1e-6)


def test_hooks_do_not_outlive_a_call() -> None:
    net = _Net()
    MultiLayerFeatures(net, ["blocks.0:2"])(torch.randn(1, 3, 8, 8))
    assert not net.blocks[0]._forward_hooks


@pytest.mark.parametrize("spec", ["blocks.0", "blocks.0:0", ":2", "blocks.0:x"])
def test_bad_layer_text_says_the_form(spec: str) -> None:
    with pytest.raises(ValueError, match="module.path:grid"):
        parse_layer(spec)


def test_unknown_module_lists_the_children() -> None:
    net = _Net()
    assert resolve_module(net, "blocks.-1") is net.blocks[1]
    with pytest.raises(ValueError, match=r"no module 'layer3'.*\['blocks', 'pool'\]"):
        resolve_module(net, "layer3")
    with pytest.raises(ValueError, match="no module '5'"):
        resolve_module(net, "blocks.5")


def test_the_memo_serves_seen_images_without_the_backbone() -> None:
    torch.manual_seed(0)
    net = _Net()
    calls = []
    net.register_forward_hook(lambda *_: calls.append(1))
    features = MultiLayerFeatures(net, ["blocks.0:2"], memoize=True)
    calls.clear()  # the probe
    images = torch.randn(4, 3, 8, 8)
    first = features(images)
    again = features(images[[2, 0]])  # seen images, in another batch
    assert len(calls) == 1
    torch.testing.assert_close(again, first[[2, 0]], rtol=0, atol=0)
    features(torch.randn(1, 3, 8, 8))  # a batch of one is computed but not kept
    assert len(features._memo) == 4 and len(calls) == 2
    mixed = torch.cat([images[:1], torch.randn(1, 3, 8, 8)])
    torch.testing.assert_close(features(mixed)[0], first[0])  # computed whole, as a batch
    assert len(calls) == 3


def test_layers_keep_the_order_they_are_named_in() -> None:
    torch.manual_seed(0)
    net, images = _Net(), torch.randn(2, 3, 8, 8)
    forward = MultiLayerFeatures(net, ["blocks.0:1", "blocks.1:1"]).raw(images)
    backward = MultiLayerFeatures(net, ["blocks.1:1", "blocks.0:1"]).raw(images)
    torch.testing.assert_close(backward, torch.cat([forward[:, :3], forward[:, 5:], forward[:, 3:5]], 1))


def test_features_of_a_cut_backbones_tail_over_its_trunks_activations_are_the_backbones() -> None:
    from cfer.core.trunk import split_holding
    from cfer.models import ModelConfig, create_model

    torch.manual_seed(0)
    backbone = create_model(ModelConfig(backbone="test_efficientnet", pretrained="none", head="linear"), 3).backbone
    backbone.eval()
    images, layers = torch.randn(4, 3, 32, 32), ["blocks.-3:2", "blocks.-1:1"]
    split = split_holding(backbone, 1, images[:2], [parse_layer(layer)[0] for layer in layers])
    whole, tail = MultiLayerFeatures(backbone, layers, probe_size=32), MultiLayerFeatures(split.tail, layers)
    assert tail.dim == whole.dim
    with torch.no_grad():
        torch.testing.assert_close(tail.raw(split.trunk(images)), whole.raw(images))
