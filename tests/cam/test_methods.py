"""Every registered CAM method builds by name and explains a small CNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cfer.cam import CAM_METHODS, CamExplainer, canonical_cam_name, create_cam, register_cam_method


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    )


@pytest.mark.parametrize("name", sorted(CAM_METHODS))
def test_every_method_maps_a_batch(name):
    model = small_cnn()
    images = torch.randn(2, 3, 12, 12)
    with CamExplainer(model, method=name, input_size=12, min_map_size=2) as explainer:
        maps = explainer(images, [0, 2])
    assert maps.shape == (2, 12, 12) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0 + 1e-6


def test_names_ignore_case_and_punctuation():
    assert canonical_cam_name("GradCAM++") == canonical_cam_name("grad-cam++") == "gradcam++"
    model = small_cnn()
    cam = create_cam("Grad_CAM", model, [model[2]])
    assert type(cam).__name__ == "GradCAM"
    cam.activations_and_grads.release()


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(KeyError, match="gradcam\\+\\+.*scorecam|scorecam.*gradcam"):
        create_cam("no-such-cam", small_cnn(), [])


def test_register_refuses_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        register_cam_method("GradCAM", CAM_METHODS["gradcam"])
