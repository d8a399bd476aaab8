"""Automatic target layers over timm families, and the override by name or module."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from cfer.cam import find_target_layer, resolve_target_layer
from cfer.models import ModelConfig, create_model

# The layer pytorch-grad-cam's examples use for each family: the last stage before pooling.
LAST_STAGE = {
    "resnet18": "layer4.1",
    "efficientnet_lite0": "bn2",
    "mobilenetv3_small_100": "blocks.5.0",
    "convnext_atto": "stages.3",
    "densenet121": "features.norm5",
    "regnetx_002": "s4",
}


@pytest.mark.parametrize("name", sorted(LAST_STAGE))
def test_last_stage_of_timm_families(name):
    model = timm.create_model(name, pretrained=False, num_classes=3)
    found = find_target_layer(model, input_size=64)
    assert found == LAST_STAGE[name]
    # It is the map that global pooling reduces: same output as forward_features.
    layer = model.get_submodule(found)
    captured = []
    handle = layer.register_forward_hook(lambda module, inputs, output: captured.append(output))
    model.eval()
    with torch.no_grad():
        expected = model.forward_features(torch.rand(1, 3, 64, 64))
    handle.remove()
    assert torch.equal(captured[-1], expected)


def test_expression_classifier_layers_are_named_from_the_model():
    model = create_model(ModelConfig(backbone="resnet18", pretrained="none"), num_classes=6)
    model.train()
    assert find_target_layer(model) == "backbone.layer4.1"
    assert model.training  # the dummy pass does not change the mode


def test_min_map_size_moves_to_a_finer_stage():
    model = create_model(ModelConfig(backbone="efficientnet_lite0", pretrained="none"), num_classes=6)
    assert find_target_layer(model, input_size=64) == "backbone.bn2"  # 2 x 2 at 64 px
    finer = find_target_layer(model, input_size=64, min_map_size=4)
    assert finer.startswith("backbone.blocks.4")  # stride 16: 4 x 4
    assert find_target_layer(model, input_size=224, min_map_size=4) == "backbone.bn2"  # 7 x 7


def test_plain_cnn_without_forward_features_takes_its_last_four_d_output():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 2))
    # The pooling's 1x1 output is 4-D too; min_map_size=2 skips it.
    assert find_target_layer(model, input_size=16, min_map_size=2) == "3"


def test_override_by_name_or_module_and_errors():
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    assert resolve_target_layer(model, "layer3") == ("layer3", model.layer3)
    assert resolve_target_layer(model, model.layer2[1]) == ("layer2.1", model.layer2[1])
    with pytest.raises(KeyError, match="layer4"):
        resolve_target_layer(model, "layer5")
    with pytest.raises(ValueError, match="not a module of the model"):
        resolve_target_layer(model, nn.Conv2d(1, 1, 1))


def test_a_transformer_needs_an_explicit_layer():
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, img_size=32, patch_size=8)
    with pytest.raises(ValueError, match="reshape_transform"):
        find_target_layer(model, input_size=32)
