"""The linear probe: new classes on a frozen copy of the backbone, the original untouched."""

from __future__ import annotations

import torch

from cfer.cam import ProbeConfig, fit_linear_probe, probe_accuracy
from cfer.data.synthetic import SyntheticConfig, SyntheticFaces
from cfer.models import ModelConfig, create_model, load_checkpoint, save_checkpoint
from cfer.taxonomy import BASIC


def test_probe_learns_new_classes_on_a_frozen_copy(tmp_path):
    torch.manual_seed(0)
    model = create_model(ModelConfig(backbone="mobilenetv3_small_050", pretrained="none"), num_classes=len(BASIC))
    before = {key: value.clone() for key, value in model.state_dict().items()}
    classes = ("happy", "sad", "happily_surprised")
    faces = SyntheticFaces(SyntheticConfig(subjects=6, size=32, categories=classes))
    probe = fit_linear_probe(model, faces, ProbeConfig(steps=100))
    assert probe.num_classes == len(classes)
    assert not any(parameter.requires_grad for parameter in probe.backbone.parameters())
    assert probe.backbone is not model.backbone
    # A linear layer over 1024 features separates 18 training images.
    assert probe_accuracy(probe, faces) > 0.9
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())
    # The probe's config describes it, so it round-trips through a checkpoint.
    path = save_checkpoint(probe, tmp_path / "probe.safetensors", {"classes": list(classes)})
    loaded, _ = load_checkpoint(path)
    images = faces.images[:4].float() / 255
    torch.testing.assert_close(loaded(images), probe(images))
