"""Cutting a timm backbone into a frozen trunk and a tail, and caching what the trunk computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cfer.core.trunk import (
    FeatureCache,
    FeatureCacheConfig,
    TailClassifier,
    block_groups,
    cache_decision,
    fingerprint,
    split_backbone,
    split_holding,
)
from cfer.models import ModelConfig, create_model


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return create_model(ModelConfig(backbone="test_efficientnet", pretrained="none", head="linear"), 3).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def _preprocess(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0


@pytest.mark.parametrize("blocks", [0, 1, 2, 4])
def test_trunk_then_tail_is_the_backbone_and_the_cut_follows_the_groups(model: nn.Module, blocks: int) -> None:
    x = _preprocess(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8))
    split = split_backbone(model.backbone, blocks, x[:2])
    with torch.no_grad():
        assert torch.equal(split.tail(split.trunk(x)), model.backbone(x))
    groups = block_groups(model.backbone)
    trainable = {name.rsplit(".", 1)[0] for group in groups[len(groups) - blocks:] for name in group} if blocks else set()
    trunk_params = {name for unit in split.trunk_units for name, _ in model.backbone.get_submodule(unit).named_parameters()}
    assert trunk_params == set() or all(not any(t.startswith(u) for t in trainable) for u in split.trunk_units)
    assert (split.tail_units == ()) == (blocks == 0)


def test_a_backbone_that_is_no_chain_is_refused() -> None:
    class Skip(nn.Module):  # the output adds the input back around its children: no chain
        def __init__(self) -> None:
            super().__init__()
            self.first, self.second = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.second(self.first(x)) + x

        def group_matcher(self, coarse: bool = False) -> dict:
            return {"stem": r"^first", "blocks": r"^second"}

    with pytest.raises(ValueError, match="chain"):
        split_backbone(Skip(), 1, torch.randn(2, 3, 4, 4))


def test_tail_classifier_trains_the_full_models_modules_and_copies_back(model: nn.Module, images: torch.Tensor) -> None:
    full = create_model(ModelConfig(backbone="test_efficientnet", pretrained="none", head="linear"), 3).eval()
    full.load_state_dict(model.state_dict())
    split = split_backbone(full.backbone, 2, _preprocess(images[:2]))
    tail = TailClassifier(split.tail, full.head)
    assert tail.backbone.units[0] is full.backbone.get_submodule(split.tail_units[0])
    tail.add_classes(2)
    assert tail.num_classes == full.num_classes == 5
    with torch.no_grad():
        assert torch.equal(tail(split.trunk(_preprocess(images))), full(_preprocess(images)))
    copy = __import__("copy").deepcopy(tail)
    with torch.no_grad():
        for parameter in copy.parameters():
            parameter.add_(1.0)
    target = create_model(ModelConfig(backbone="test_efficientnet", pretrained="none", head="linear"), 3)
    target.load_state_dict(model.state_dict())
    copy.into(target)
    assert target.num_classes == 5
    assert torch.equal(target.head.fc.weight, copy.head.fc.weight)
    assert torch.equal(target.backbone.get_submodule(split.tail_units[0]).state_dict()[next(iter(
        copy.backbone.units[0].state_dict()))], next(iter(copy.backbone.units[0].state_dict().values())))
    assert tail.l2_penalty().item() == 0.0


def test_feature_cache_computes_the_trunk_once_and_is_keyed(model: nn.Module, images: torch.Tensor, tmp_path) -> None:
    split = split_backbone(model.backbone, 2, _preprocess(images[:2]))
    cache = FeatureCache.build(split, images, _preprocess, "div255", batch_size=4)
    with torch.no_grad():
        assert torch.equal(cache[torch.tensor([1, 4])], split.trunk(_preprocess(images[[1, 4]])))
    assert len(cache) == 6 and cache.nbytes == cache.activations.numel() * 4
    other_images = images.clone()
    other_images[0, 0, 0, 0] ^= 1
    assert FeatureCache.build(split, other_images, _preprocess, "div255", batch_size=4).key != cache.key
    assert FeatureCache.build(split, images, _preprocess, "div256", batch_size=4).key != cache.key
    on_disk = FeatureCache.build(split, images, _preprocess, "div255", batch_size=4, directory=tmp_path)
    assert torch.equal(on_disk.activations, cache.activations) and on_disk.path is not None and on_disk.path.exists()
    again = FeatureCache.build(split, images, _preprocess, "div255", batch_size=4, directory=tmp_path)
    assert again.path == on_disk.path and "memory-mapped" in again.describe()
    halved = FeatureCache.build(split, images, _preprocess, "div255", dtype=torch.float16)
    assert halved.activations.dtype == torch.float16 and halved.key != cache.key
    assert torch.allclose(halved.activations.float(), cache.activations, rtol=1e-2, atol=1e-2)


def test_fingerprint_changes_with_weights() -> None:
    layer = nn.Linear(2, 2)
    before = fingerprint(layer, "x")
    with torch.no_grad():
        layer.weight[0, 0] += 1e-6
    assert fingerprint(layer, "x") != before


def test_cache_decision_says_why() -> None:
    assert cache_decision(FeatureCacheConfig(), augmentation=False)[0] is True
    cached, reason = cache_decision(FeatureCacheConfig(), augmentation=True)
    assert not cached and "augmentation" in reason
    assert cache_decision(FeatureCacheConfig(mode="never"), augmentation=False)[0] is False
    with pytest.raises(ValueError, match="augmentation"):
        cache_decision(FeatureCacheConfig(mode="always"), augmentation=True)


def test_the_tail_finds_the_backbones_modules_by_their_paths(model: nn.Module, images: torch.Tensor) -> None:
    backbone = model.backbone
    split = split_backbone(backbone, 2, _preprocess(images[:2]))
    last, inner = len(backbone.blocks) - 1, len(backbone.blocks[-1]) - 1
    assert split.tail.submodule("blocks.-1") is backbone.blocks[last]
    assert split.tail.submodule(f"blocks.{last}.-1") is backbone.blocks[last][inner]
    assert split.tail.submodule("conv_head") is backbone.conv_head
    assert split.tail.input_shape == tuple(split.trunk(_preprocess(images[:2])).shape[1:])
    first_trunk_block = f"blocks.{-len(backbone.blocks)}"  # blocks.0, in the trunk
    assert not split.tail.holds(first_trunk_block)
    with pytest.raises(ValueError, match="not in this part of the backbone"):
        split.tail.submodule(first_trunk_block)


@pytest.mark.parametrize("path", ["blocks.-2", "blocks.-4", "blocks.1.0"])
def test_split_holding_moves_the_cut_just_before_the_hooked_module(model: nn.Module, images: torch.Tensor,
                                                                   path: str) -> None:
    example = _preprocess(images[:2])
    split = split_holding(model.backbone, 1, example, [path])
    assert split.tail.holds(path)
    assert split.trainable_blocks == 1 or not split_backbone(model.backbone, split.trainable_blocks - 1,
                                                             example).tail.holds(path)
    with torch.no_grad():
        assert torch.equal(split.tail(split.trunk(_preprocess(images))), model.backbone(_preprocess(images)))


def test_split_holding_refuses_a_path_of_no_module(model: nn.Module, images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="no module 'blocks.99'"):
        split_holding(model.backbone, 1, _preprocess(images[:2]), ["blocks.99"])
