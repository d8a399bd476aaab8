"""Tests of backbone creation, packaged ImageNet weights and local weight files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from PIL import Image
from timm.data import ImageNetInfo, create_transform
from torch import nn

from cfer.models.backbones import (
    PACKAGED_WEIGHTS,
    WeightsUnavailableError,
    backbone_data_config,
    create_backbone,
    create_imagenet_classifier,
    feature_dim,
    load_backbone_weights,
    map_state_dict_in_order,
)

# ImageNet-1k indices of classes that fit sklearn's sample photos
CHINA_CLASSES = {  # china.jpg: a Chinese temple / palace building with trees
    698: "palace",
    663: "monastery",
    832: "stupa",
    497: "church",
    442: "bell cote",
    538: "dome",
    483: "castle",
    873: "triumphal arch",
    668: "mosque",
}
FLOWER_CLASSES = {  # flower.jpg: a flower head with a yellow centre
    985: "daisy",
    309: "bee",
    738: "pot",
    883: "vase",
    986: "yellow lady's slipper",
}


def _random_input(size: int = 32, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_class_index_lists_match_imagenet_names() -> None:
    info = ImageNetInfo()
    for index, name in {**CHINA_CLASSES, **FLOWER_CLASSES}.items():
        assert info.index_to_description(index).lower().startswith(name.lower())


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_packaged_lite_weights_classify_sample_photos(name: str) -> None:
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    samples = sklearn_datasets.load_sample_images()
    classifier = create_imagenet_classifier(name)
    transform = create_transform(**backbone_data_config(classifier), is_training=False)
    images = torch.stack([transform(Image.fromarray(array)) for array in samples.images])
    photo_names = [Path(name).name for name in samples.filenames]
    assert photo_names == ["china.jpg", "flower.jpg"]

    with torch.no_grad():
        probabilities = classifier(images).softmax(dim=-1)
    top5 = probabilities.topk(5, dim=-1).indices.tolist()
    info = ImageNetInfo()
    for photo, indices in zip(photo_names, top5):
        logging.getLogger(__name__).info(
            "%s %s top-5: %s", name, photo, [info.index_to_description(i) for i in indices]
        )
    china_top5, flower_top5 = top5
    assert china_top5[0] in CHINA_CLASSES, china_top5
    assert len(set(china_top5) & set(CHINA_CLASSES)) >= 2, china_top5
    # lite1 and lite2 see the flower's centre as a honeycomb first (599), then daisy or bee
    assert flower_top5[0] in FLOWER_CLASSES or (name != "efficientnet_lite0" and set(flower_top5) & set(FLOWER_CLASSES)), flower_top5

    # create_backbone loads the same weights: its features are the classifier's pre-logits
    backbone = create_backbone(name).eval()
    with torch.no_grad():
        pre_logits = classifier.forward_head(classifier.forward_features(images), pre_logits=True)
        torch.testing.assert_close(backbone(images), pre_logits)


def test_lite0_expects_tf_inception_normalisation() -> None:
    # the data config follows the architecture, also without loading the weights, so a model
    # rebuilt from a checkpoint is fed as in training
    for pretrained in ("imagenet", "none"):
        config = backbone_data_config(create_backbone("efficientnet_lite0", pretrained=pretrained))
        assert config["mean"] == pytest.approx((127 / 255,) * 3)
        assert config["std"] == pytest.approx((128 / 255,) * 3)
        assert config["input_size"] == (3, 224, 224)


def test_packaged_weights_registry_has_lite0() -> None:
    weights = PACKAGED_WEIGHTS["efficientnet_lite0"]
    assert weights.path().is_file()


def test_in_order_mapping_names_first_mismatching_pair() -> None:
    target = {"a.weight": torch.zeros(2, 3), "b.weight": torch.zeros(4)}
    source = {"x.weight": torch.ones(2, 3), "y.weight": torch.ones(5), "fc.weight": torch.ones(1)}
    with pytest.raises(ValueError, match=r"'y.weight' \(5,\) -> 'b.weight' \(4,\)"):
        map_state_dict_in_order(source, target, source_name="file.pth")
    source["y.weight"] = torch.ones(4)
    mapped, leftover = map_state_dict_in_order(source, target)
    assert list(mapped) == ["a.weight", "b.weight"]
    assert torch.equal(mapped["b.weight"], torch.ones(4))
    assert leftover == ["fc.weight"]
    with pytest.raises(ValueError, match="fewer"):
        map_state_dict_in_order({"x.weight": torch.ones(2, 3)}, target)


@pytest.mark.parametrize(
    ("name", "global_pool"),
    [
        ("efficientnet_lite0", "avg"),
        ("efficientnet_lite0", "catavgmax"),
        ("resnet18", "max"),
        ("mobilenetv3_small_100", "avg"),
        ("convnext_atto", "avg"),
    ],
)
def test_feature_dim_matches_output(name: str, global_pool: str) -> None:
    backbone = create_backbone(name, pretrained="none", global_pool=global_pool).eval()
    with torch.no_grad():
        features = backbone(_random_input())
    assert features.shape == (2, feature_dim(backbone))


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    if path.suffix == ".safetensors":
        safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_file_round_trip(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(0)
    source = create_backbone("resnet18", pretrained="none").eval()
    path = _save(source.state_dict(), tmp_path / f"backbone{suffix}")
    loaded = create_backbone("resnet18", pretrained="none", weights=path).eval()
    inputs = _random_input()
    with torch.no_grad():
        torch.testing.assert_close(loaded(inputs), source(inputs), rtol=0, atol=0)


def test_weights_file_of_classifier_or_full_timm_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    full = timm.create_model("resnet18", num_classes=10).eval()  # has fc.weight, fc.bias
    inputs = _random_input()
    with torch.no_grad():
        expected = full.forward_head(full.forward_features(inputs), pre_logits=True)
    timm_file = _save(full.state_dict(), tmp_path / "timm.pth")
    loaded = create_backbone("resnet18", pretrained="none", weights=timm_file).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(inputs), expected, rtol=0, atol=0)

    wrapped = {f"backbone.{k}": v for k, v in loaded.state_dict().items()}
    wrapped["head.fc.weight"] = torch.zeros(6, 512)
    wrapped_file = _save(wrapped, tmp_path / "classifier.safetensors")
    reloaded = create_backbone("resnet18", pretrained="none", weights=wrapped_file).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(inputs), expected, rtol=0, atol=0)


def test_weights_shape_mismatch_names_key_shapes_and_file(tmp_path: Path) -> None:
    state = create_backbone("resnet18", pretrained="none").state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 5, 5)
    path = _save(state, tmp_path / "bad.safetensors")
    with pytest.raises(ValueError) as error:
        create_backbone("resnet18", pretrained="none", weights=path)
    message = str(error.value)
    assert "'layer1.0.conv1.weight'" in message
    assert "(64, 64, 5, 5)" in message and "(64, 64, 3, 3)" in message
    assert "bad.safetensors" in message


def test_weights_of_another_architecture_fail_clearly(tmp_path: Path) -> None:
    path = _save(
        create_backbone("mobilenetv3_small_100", pretrained="none").state_dict(),
        tmp_path / "mobilenet.pth",
    )
    with pytest.raises(ValueError, match="missing keys"):
        create_backbone("resnet18", pretrained="none", weights=path)


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        create_backbone("resnet18", pretrained="none", weights=tmp_path / "nope.safetensors")


def test_unsupported_weights_suffix(tmp_path: Path) -> None:
    path = tmp_path / "weights.npz"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=".safetensors"):
        load_backbone_weights(nn.Linear(1, 1), path)


def test_offline_timm_weights_error_says_how_to_pass_a_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_create_model = timm.create_model

    def offline_create_model(name: str, pretrained: bool = False, **kwargs: object) -> nn.Module:
        if pretrained:
            raise OSError("Name or service not known")  # what huggingface_hub raises offline
        return real_create_model(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline_create_model)
    with pytest.raises(WeightsUnavailableError) as error:
        create_backbone("resnet18", pretrained="imagenet")
    message = str(error.value)
    assert "could not download" in message and "resnet18" in message
    assert "weights: PATH" in message and "model.weights=PATH" in message
    assert "pretrained: none" in message
    assert isinstance(error.value.__cause__, OSError)


def test_weights_file_is_used_instead_of_download(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _save(create_backbone("resnet18", pretrained="none").state_dict(), tmp_path / "w.pth")
    real_create_model = timm.create_model

    def no_download(name: str, pretrained: bool = False, **kwargs: object) -> nn.Module:
        assert not pretrained, "a weights file must not trigger a download"
        return real_create_model(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", no_download)
    create_backbone("resnet18", pretrained="imagenet", weights=path)


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(KeyError, match="efficientnet_lite0"):
        create_backbone("efficientnet_lite_0", pretrained="none")
    with pytest.raises(ValueError, match="imagenet"):
        create_backbone("resnet18", pretrained="imagenet21k")


class _Payload:
    """Unpickling this would run code; torch.load(weights_only=True) must refuse it."""

    def __reduce__(self):
        return (print, ("unpickled!",))


def test_a_pickle_with_objects_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"weight": _Payload()}, path)
    with pytest.raises(ValueError, match=r"^refused .*evil\.pth: it is not a plain tensor file") as caught:
        load_backbone_weights(nn.Linear(1, 1), path)
    assert "\n" not in str(caught.value) and "unpickled!" not in capsys.readouterr().out


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_damaged_weights_file_says_so(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"\x00\x01 not weights")
    with pytest.raises(ValueError, match=r"broken.* is not a readable"):
        load_backbone_weights(nn.Linear(1, 1), path)
