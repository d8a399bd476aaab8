"""Tests of the expression classifier, backbone freezing and checkpoints."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from cfer.models.backbones import create_backbone
from cfer.models.checkpoint import load_checkpoint, save_checkpoint
from cfer.models.classifier import (
    ExpressionClassifier,
    ModelConfig,
    block_groups,
    create_model,
    freeze_backbone,
    trainable_parameter_count,
)
from strategies.protocols import GrowingClassifier

FAMILIES = ["efficientnet_lite0", "resnet18", "mobilenetv3_small_100"]


def _model(
    backbone: str = "efficientnet_lite0", num_classes: int = 6, **kwargs: object
) -> ExpressionClassifier:
    torch.manual_seed(0)
    config = ModelConfig(backbone=backbone, pretrained="none", **kwargs)
    return create_model(config, num_classes)


def _images(batch: int = 4, size: int = 32) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


def _group_of(model: ExpressionClassifier) -> dict[str, int]:
    return {
        name: index for index, group in enumerate(block_groups(model.backbone)) for name in group
    }


def _pretend_pretrained(model: ExpressionClassifier) -> None:
    # timm zero-initialises the last BatchNorm scale of residual blocks; frozen at zero it would
    # block the gradient of its whole branch, which pretrained weights do not
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for module in model.backbone.modules():
            if isinstance(module, _BatchNorm):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                variance = torch.rand(module.running_var.shape, generator=generator) + 0.5
                module.running_var.copy_(variance)


def test_model_satisfies_growing_classifier_protocol() -> None:
    model = _model()
    assert isinstance(model, GrowingClassifier)
    assert isinstance(model.backbone, nn.Module) and isinstance(model.head, nn.Module)
    assert model.num_classes == 6


def test_forward_and_features_shapes() -> None:
    model = _model().eval()
    images = _images()
    with torch.no_grad():
        features = model.features(images)
        logits = model(images)
        assert features.shape == (4, model.feature_dim) == (4, 1280)
        assert logits.shape == (4, 6)
        torch.testing.assert_close(logits, model.head(features))
    assert set(model.data_config) >= {"mean", "std", "input_size"}


@pytest.mark.parametrize("head", ["paper", "linear"])
def test_adding_classes_keeps_old_logits(head: str) -> None:
    model = _model(head=head).eval()
    images = _images()
    with torch.no_grad():
        before = model(images)
        model.add_classes(1)
        model.add_classes(2)
        after = model(images)
    assert model.num_classes == 9
    assert after.shape == (4, 9)
    # the old output rows are copied bit for bit; the logits only up to the matmul blocking of a
    # wider output, which on some CPUs changes the last bit
    torch.testing.assert_close(after[:, :6], before, rtol=0, atol=1e-6)


def test_global_pool_must_give_vectors() -> None:
    with pytest.raises(ValueError, match="catavgmax"):
        _model(global_pool="")


@pytest.mark.parametrize("family", [*FAMILIES, "convnext_atto"])
def test_block_groups_cover_every_parameter_once(family: str) -> None:
    backbone = create_backbone(family, pretrained="none")
    names = [name for group in block_groups(backbone) for name in group]
    assert sorted(names) == sorted(name for name, _ in backbone.named_parameters())
    assert len(block_groups(backbone)) >= 4


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("train_batchnorm", [False, True])
def test_freezing_freezes_parameters_and_batchnorm_statistics(
    family: str, train_batchnorm: bool
) -> None:
    model = _model(family)
    _pretend_pretrained(model)
    freeze_backbone(model, trainable_blocks=2, train_batchnorm=train_batchnorm)
    group_of = _group_of(model)
    num_groups = len(block_groups(model.backbone))
    last_groups = {num_groups - 2, num_groups - 1}
    before = {key: value.clone() for key, value in model.state_dict().items()}

    model.train()
    # every parameter goes to the optimizer: requires_grad alone must keep frozen ones fixed
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loss = nn.functional.cross_entropy(model(_images()), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    optimizer.step()
    after = model.state_dict()

    batchnorms = {
        name for name, module in model.backbone.named_modules() if isinstance(module, _BatchNorm)
    }
    for name, parameter in model.backbone.named_parameters():
        module_name, _ = name.rsplit(".", 1)
        in_trained_group = group_of[name] in last_groups
        trains = in_trained_group and (train_batchnorm or module_name not in batchnorms)
        assert parameter.requires_grad == trains, name
        changed = not torch.equal(before[f"backbone.{name}"], after[f"backbone.{name}"])
        assert changed == trains, name
    for module_name in batchnorms:
        group = group_of[f"{module_name}.weight"]
        trains = train_batchnorm and group in last_groups
        for buffer in ("running_mean", "running_var"):
            key = f"backbone.{module_name}.{buffer}"
            assert (not torch.equal(before[key], after[key])) == trains, key
    head_changed = [not torch.equal(before[k], after[k]) for k in before if k.startswith("head.")]
    assert all(head_changed)


@pytest.mark.parametrize("family", FAMILIES)
def test_frozen_batchnorm_stays_in_eval_mode(family: str) -> None:
    model = _model(family)
    model.train()
    freeze_backbone(model, trainable_blocks=1, train_batchnorm=True)
    group_of = _group_of(model)
    last = len(block_groups(model.backbone)) - 1
    model.eval()
    model.train()
    for name, module in model.backbone.named_modules():
        if isinstance(module, _BatchNorm):
            assert module.training == (group_of[f"{name}.weight"] == last), name
    assert model.head.training

    freeze_backbone(model, trainable_blocks=-1, train_batchnorm=True)  # unfreezing restores
    assert all(module.training for module in model.modules())


@pytest.mark.parametrize("family", FAMILIES)
def test_trainable_blocks_are_monotonic(family: str) -> None:
    model = _model(family)
    num_groups = len(block_groups(model.backbone))
    total = sum(p.numel() for p in model.backbone.parameters())
    counts = []
    for blocks in range(num_groups + 2):
        freeze_backbone(model, blocks, train_batchnorm=True)
        counts.append(trainable_parameter_count(model.backbone))
    assert counts[0] == 0
    assert all(a < b for a, b in itertools.pairwise(counts[: num_groups + 1]))
    assert counts[num_groups] == counts[num_groups + 1] == total
    freeze_backbone(model, None)
    frozen_batchnorm_count = trainable_parameter_count(model.backbone)
    assert 0 < frozen_batchnorm_count < total  # train_batchnorm=False leaves BN frozen
    freeze_backbone(model, -1, train_batchnorm=True)
    assert trainable_parameter_count(model.backbone) == total
    with pytest.raises(ValueError, match="trainable_blocks"):
        freeze_backbone(model, -2)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = _model("resnet18")
    freeze_backbone(model, 1)
    model.eval()
    path = save_checkpoint(model, tmp_path / "ckpt" / "basic.safetensors", {"class_names": ["a"]})
    assert sorted(p.name for p in path.parent.iterdir()) == ["basic.safetensors"]  # no temp left

    loaded, metadata = load_checkpoint(path)
    assert metadata == {"class_names": ["a"]}
    assert loaded.config == model.config
    images = _images()
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), rtol=0, atol=0)


def test_checkpoint_of_grown_head_loads(tmp_path: Path) -> None:
    model = _model(num_classes=6)
    model.add_classes(1)
    model.add_classes(1)
    model.eval()
    names = ["happy", "sad", "fearful", "angry", "surprised", "disgusted", "a", "b"]
    path = save_checkpoint(model, tmp_path / "grown.safetensors", {"class_names": names})
    loaded, metadata = load_checkpoint(path)
    assert loaded.num_classes == 8
    assert metadata["class_names"] == names
    images = _images()
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), rtol=0, atol=0)


def test_checkpoint_loads_without_downloading_or_packaged_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _model("resnet18")
    config = dataclasses.replace(model.config, pretrained="imagenet", weights="/gone.pth")
    model.config = config
    path = save_checkpoint(model, tmp_path / "model.safetensors")

    import timm

    real_create_model = timm.create_model

    def offline(name: str, pretrained: bool = False, **kwargs: object) -> nn.Module:
        assert not pretrained
        return real_create_model(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    loaded, metadata = load_checkpoint(path)
    assert loaded.config == config  # the provenance is kept
    assert metadata == {}


def test_checkpoint_backbone_is_usable_as_weights_file(tmp_path: Path) -> None:
    model = _model("resnet18").eval()
    path = save_checkpoint(model, tmp_path / "basic.safetensors")
    backbone = create_backbone("resnet18", pretrained="none", weights=path).eval()
    images = _images()
    with torch.no_grad():
        torch.testing.assert_close(backbone(images), model.features(images), rtol=0, atol=0)


def test_load_rejects_foreign_and_missing_files(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"weight": torch.zeros(1)}, str(foreign))
    with pytest.raises(ValueError, match="not a cfer checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_save_needs_config(tmp_path: Path) -> None:
    model = _model()
    model.config = None
    with pytest.raises(ValueError, match="create_model"):
        save_checkpoint(model, tmp_path / "x.safetensors")


def test_frozen_batchnorm_keeps_its_statistics_when_the_backbone_alone_trains():
    # Avalanche's iCaRL wraps model.backbone and calls train() on it, not on the classifier.
    torch.manual_seed(0)
    model = create_model(ModelConfig(backbone="resnet18", pretrained="none"), num_classes=3)
    freeze_backbone(model, trainable_blocks=1)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items() if "running_mean" in k}
    model.backbone.train()
    model.backbone(torch.randn(4, 3, 32, 32) * 3 + 1)
    after = {k: v for k, v in model.backbone.state_dict().items() if "running_mean" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)
    # Unfrozen BatchNorm still learns its statistics.
    freeze_backbone(model, trainable_blocks=-1, train_batchnorm=True)
    model.backbone.train()
    model.backbone(torch.randn(4, 3, 32, 32) * 3 + 1)
    changed = {k: v for k, v in model.backbone.state_dict().items() if "running_mean" in k}
    assert any(not torch.equal(before[k], changed[k]) for k in before)


def test_multitask_model_keeps_its_regression_outputs_when_classes_are_added() -> None:
    from cfer.models.classifier import ModelConfig, create_model

    torch.manual_seed(0)
    model = create_model(ModelConfig(backbone="test_efficientnet", pretrained="none", regression_outputs=2), 6).eval()
    images = torch.randn(3, 3, 32, 32)
    logits, affect = model.forward_multitask(images)
    assert logits.shape == (3, 6) and affect.shape == (3, 2) and affect.abs().max() <= 1
    model.add_classes(2)
    new_logits, new_affect = model.forward_multitask(images)
    assert new_logits.shape == (3, 8)
    torch.testing.assert_close(new_logits[:, :6], logits)  # old class units unchanged
    torch.testing.assert_close(new_affect, affect)  # regression outputs unchanged
    plain = create_model(ModelConfig(backbone="test_efficientnet", pretrained="none"), 6)
    with pytest.raises(ValueError, match="no regression outputs"):
        plain.forward_multitask(images)


def test_regression_outputs_draw_nothing_from_the_global_random_stream() -> None:
    states, heads = [], []
    for outputs in (0, 2):
        torch.manual_seed(7)
        model = create_model(ModelConfig(backbone="test_efficientnet", pretrained="none", regression_outputs=outputs), 6)
        states.append(torch.get_rng_state())
        heads.append(model.head.state_dict())
    # the classes of a model with valence/arousal train exactly as those of one without
    assert torch.equal(states[0], states[1])
    assert all(torch.equal(heads[0][key], heads[1][key]) for key in heads[0])
