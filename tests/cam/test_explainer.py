"""CamExplainer: class names, batches, every kind of model, and hooks released on exit."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from cfer.cam import CamExplainer
from cfer.models import ModelConfig, create_model, freeze_backbone
from cfer.taxonomy import BASIC


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model(ModelConfig(backbone="mobilenetv3_small_050", pretrained="none"), num_classes=len(BASIC))


@pytest.fixture(scope="module")
def images():
    return torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)


def hook_count(module: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in module.modules())


def test_hooks_are_released_on_exit_and_mode_restored(model, images):
    model.train()
    before = hook_count(model)
    with CamExplainer(model, BASIC, input_size=32) as explainer:
        assert hook_count(model) > before and explainer.hook_count > 0
        explainer(images, "happy")
    assert hook_count(model) == before
    assert explainer.hook_count == 0
    assert model.training
    with pytest.raises(RuntimeError, match="closed"):
        explainer(images, "happy")


def test_errors_inside_the_block_propagate_and_still_release(model):
    before = hook_count(model)
    # pytorch-grad-cam's own __exit__ prints and swallows IndexError; ours must not.
    with pytest.raises(IndexError), CamExplainer(model, BASIC, input_size=32):
        [][0]
    assert hook_count(model) == before


def test_class_names_and_indices_select_the_same_map(model, images):
    with CamExplainer(model, BASIC, input_size=32) as explainer:
        by_name = explainer(images, "sad")
        by_index = explainer(images, BASIC.index("sad"))
        per_image = explainer(images, ["sad", "happy", "sad"])
    np.testing.assert_allclose(by_name, by_index, atol=1e-6)
    np.testing.assert_allclose(per_image[[0, 2]], by_name[[0, 2]], atol=1e-6)


def test_class_maps_equal_one_pass_per_class(model, images):
    with CamExplainer(model, BASIC, input_size=32, batch_size=2) as explainer:
        maps = explainer.class_maps(images, ["angry", "happy"])
        separate = [explainer(images, name) for name in ("angry", "happy")]
    assert maps.shape == (3, 2, 32, 32)
    np.testing.assert_allclose(maps[:, 0], separate[0], atol=1e-5)
    np.testing.assert_allclose(maps[:, 1], separate[1], atol=1e-5)


def test_missing_class_error_lists_the_models_classes(model, images):
    missing = "no class 'happily_surprised'; its classes are \\['happy', 'sad'"
    with CamExplainer(model, BASIC, input_size=32) as explainer, pytest.raises(KeyError, match=missing):
        explainer.class_maps(images, ["happy", "happily_surprised"])
    with pytest.raises(ValueError, match="7 class names for a model with 6 outputs"):
        CamExplainer(model, BASIC + ("neutral",), input_size=32)
    assert hook_count(model) == 0


def test_frozen_backbone_and_grown_head_still_get_maps(images):
    torch.manual_seed(1)
    grown = create_model(ModelConfig(backbone="mobilenetv3_small_050", pretrained="none"), num_classes=6)
    grown.add_classes(2)  # an incremental model: basic + two compounds
    freeze_backbone(grown, 0)
    classes = BASIC + ("happily_surprised", "sadly_angry")
    with CamExplainer(grown, classes, input_size=32, min_map_size=4) as explainer:
        maps = explainer.class_maps(images, ["sadly_angry", "sad", "angry"])
    assert maps.shape == (3, 3, 32, 32)
    assert (maps.reshape(9, -1).max(1) > 0).any()  # gradients did reach the frozen layers


def test_plain_timm_classifier_and_predicted_class():
    model = timm.create_model("resnet18", pretrained=False, num_classes=4)
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with CamExplainer(model, method="gradcam++", input_size=64) as explainer:
        assert explainer.target_layer_name == "layer4.1"
        maps = explainer(images)  # None: each image's predicted class
        with pytest.raises(IndexError):
            explainer(images, 4)
    assert maps.shape == (2, 64, 64)
