"""run_gradcam end to end on tiny checkpoints: figures, scores and the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from cfer.cam import GradCamConfig, ProbeConfig, format_gradcam_summary, load_explained_model, run_gradcam
from cfer.config import save_config
from cfer.data.sources import DataConfig
from cfer.models import ModelConfig, create_model, save_checkpoint
from cfer.taxonomy import BASIC, COMPOUND
from cfer.training.basic import BasicPhaseConfig

MODEL = ModelConfig(backbone="mobilenetv3_small_050", pretrained="none")
PANELS = ("happily_surprised", "appalled")
TINY = {"subjects": 1, "probe_subjects": 2, "probe": ProbeConfig(steps=20)}


def make_run(folder: Path, classes: tuple[str, ...]) -> Path:
    """A run directory as the basic phase leaves it: config.yaml and model.safetensors."""
    torch.manual_seed(0)
    save_config(BasicPhaseConfig(data=DataConfig(size=32, subjects=5), model=MODEL), folder / "config.yaml")
    save_checkpoint(create_model(MODEL, len(classes)), folder / "model.safetensors", {"classes": list(classes)})
    return folder


@pytest.fixture(scope="module")
def basic_result(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("basic_run"), BASIC)
    out = tmp_path_factory.mktemp("gradcam")
    return out, run_gradcam(run, out, GradCamConfig(panel_subjects=1, panels=PANELS, **TINY))


def test_basic_model_run_writes_figures_and_json(basic_result):
    out, summary = basic_result
    assert json.loads((out / "gradcam.json").read_text()) == summary
    expected = {"subject_grid.png", "subject_grid_probe.png", "similarity.png"}
    expected |= {f"basic_compound/{name}.png" for name in PANELS}
    assert set(summary["figures"]) == expected
    for name in expected:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 100
    assert not list(out.rglob("*.tmp"))  # atomic writes leave no temporaries


def test_basic_model_summary_holds_the_scores(basic_result):
    _, summary = basic_result
    # Explained subjects start after the 5 the run was trained on.
    assert summary["images"] == {"subjects": [5, 5], "size": 32, "seed": 0, "count": 21,
                                 "categories": list(BASIC + COMPOUND)}
    assert summary["target_layer"].startswith("backbone.blocks")
    groups = summary["pointing"]["groups"]
    assert set(groups) == {"own class, basic images", "components, compound images"}
    assert groups["own class, basic images"]["maps"] == 6
    assert groups["components, compound images"]["maps"] == 30
    assert 0 < groups["own class, basic images"]["chance"] < 1
    similarity = summary["similarity"]
    assert similarity["available"] and "probe" in similarity["model"]
    assert similarity["overall"]["images"] == len(COMPOUND)
    assert len(summary["probe"]["classes"]) == 21
    text = format_gradcam_summary(summary)
    assert "pointing game" in text and "linear probe over 21 classes" in text and "Pearson r" in text


def test_without_probe_the_summary_says_what_is_missing(tmp_path):
    run = make_run(tmp_path / "run", BASIC)
    summary = run_gradcam(run / "model.safetensors", tmp_path / "out",
                          GradCamConfig(fit_probe=False, method="layercam", panel_subjects=0, **TINY))
    assert summary["similarity"]["available"] is False
    assert "compound outputs" in summary["similarity"]["reason"]
    assert summary["figures"] == ["subject_grid.png"] and "probe" not in summary
    assert "compound outputs" in format_gradcam_summary(summary)


def test_a_model_with_compound_outputs_is_measured_directly(tmp_path):
    run = make_run(tmp_path / "run", BASIC + COMPOUND)
    summary = run_gradcam(run, tmp_path / "out", GradCamConfig(panel_subjects=0, **TINY))
    assert summary["similarity"]["model"] == "the run's model" and "probe" not in summary
    assert summary["pointing"]["groups"]["own class, compound images"]["maps"] == len(COMPOUND)
    assert set(summary["similarity"]["per_compound"]) == set(COMPOUND)


def test_missing_checkpoint_and_bad_settings(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        run_gradcam(tmp_path, tmp_path / "out", GradCamConfig(**TINY))
    with pytest.raises(KeyError, match="known CAM methods"):
        GradCamConfig(method="gradcam+++")
    with pytest.raises(ValueError, match="grid_subject"):
        GradCamConfig(subjects=2, grid_subject=2)
    with pytest.raises(ValueError, match="panels must be compound"):
        GradCamConfig(panels=("happy",))


def test_a_continual_model_finds_its_runs_config_above_it(tmp_path):
    # cfer train-incremental keeps config.yaml at the top, with the data settings under `basic`.
    (tmp_path / "config.yaml").write_text("basic:\n  data:\n    size: 32\n    subjects: 7\n")
    classes = BASIC + COMPOUND[:2]
    checkpoint = tmp_path / "runs" / "cfer" / "order_0" / "model.safetensors"
    save_checkpoint(create_model(MODEL, len(classes)), checkpoint, {"classes": list(classes)})
    model, names, data = load_explained_model(checkpoint)
    assert names == classes and model.num_classes == len(classes)
    assert data == {"size": 32, "subjects": 7}
    save_checkpoint(create_model(MODEL, 2), tmp_path / "unnamed.safetensors", {})
    with pytest.raises(ValueError, match="must name its 2 classes"):
        load_explained_model(tmp_path / "unnamed.safetensors")
