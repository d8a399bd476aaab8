"""The basic phase end to end on tiny synthetic data: learning, outputs, resume and the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from cfer.cli import main
from cfer.config import load_config
from cfer.data.sources import DataConfig
from cfer.models.checkpoint import load_checkpoint
from cfer.models.classifier import ModelConfig
from cfer.taxonomy import BASIC
from cfer.training.basic import BasicPhaseConfig, load_basic_model, run_basic_phase
from cfer.training.loop import Trainer


def tiny_config(**changes) -> BasicPhaseConfig:
    settings = dict(
        data=DataConfig(size=48, subjects=40, samples_per_category=2),
        model=ModelConfig(trainable_blocks=1),
        folds=4,
        fold=0,
        head_epochs=40,
        finetune_epochs=2,
        patience=8,
        batch_size=32,
        progress=False,
    )
    settings.update(changes)
    return BasicPhaseConfig(**settings)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("basic")
    return out, run_basic_phase(tiny_config(), out)


def test_tiny_run_learns_above_chance(finished_run):
    _, summary = finished_run
    # 10 held-out subjects x 6 classes x 2 images: chance is 1/6, and 0.25 is 2.5 standard
    # deviations of a guesser's accuracy above it.
    assert summary["best_fold_test"]["accuracy"] > 0.25


def test_run_writes_every_output(finished_run):
    out, summary = finished_run
    for name in ("config.yaml", "model.safetensors", "metrics.json"):
        assert (out / name).is_file()
    fold = out / "fold_0"
    for name in ("model.safetensors", "metrics.json", "confusion_matrix.png", "curves.png"):
        assert (fold / name).is_file(), name
    assert not (fold / "state.pt").exists()  # resume state is dropped once the fold is done
    metrics = json.loads((fold / "metrics.json").read_text())
    assert set(metrics["test"]["per_class"]) == set(BASIC)
    assert len(metrics["test"]["confusion_matrix"]) == len(BASIC)
    assert metrics["epochs"] == len(metrics["history"]["val_loss"]) > 0
    # Subject-wise: train, validation and test subjects are disjoint.
    subjects = {name: set(ids) for name, ids in metrics["subjects"].items()}
    assert not subjects["train"] & subjects["val"] and not subjects["train"] & subjects["test"]
    assert not subjects["val"] & subjects["test"]
    assert load_config(BasicPhaseConfig, out / "config.yaml") == tiny_config()
    assert summary["best_fold"] == 0


def test_checkpoint_loads_with_its_classes(finished_run):
    out, _ = finished_run
    model, metadata = load_basic_model(out)
    assert metadata["classes"] == list(BASIC)
    assert model.num_classes == len(BASIC)
    again, _ = load_checkpoint(out / "fold_0" / "model.safetensors")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model.eval()(x), again.eval()(x))


def test_finished_fold_is_reused(finished_run, monkeypatch):
    out, summary = finished_run

    def fail(*args, **kwargs):
        raise AssertionError("a finished fold must not train again")

    monkeypatch.setattr(Trainer, "train_epoch", fail)
    assert run_basic_phase(tiny_config(), out)["best_fold_test"] == summary["best_fold_test"]


def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    config = tiny_config(data=DataConfig(size=32, subjects=12), head_epochs=3, finetune_epochs=3, patience=10,
                         model=ModelConfig(pretrained="none", trainable_blocks=1))
    reference = run_basic_phase(config, tmp_path / "uninterrupted")

    calls = {"n": 0}
    original = Trainer.train_epoch

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # die in the middle of the fine-tuning stage
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_basic_phase(config, tmp_path / "resumed")
    assert (tmp_path / "resumed" / "fold_0" / "state.pt").exists()
    monkeypatch.setattr(Trainer, "train_epoch", original)
    resumed = run_basic_phase(config, tmp_path / "resumed")
    assert resumed["folds"][0]["epochs"] == reference["folds"][0]["epochs"]
    assert resumed["best_fold_test"]["confusion_matrix"] == reference["best_fold_test"]["confusion_matrix"]


def test_changed_settings_are_not_mixed_into_a_run(tmp_path):
    config = tiny_config(data=DataConfig(size=32, subjects=6), head_epochs=1, finetune_epochs=0,
                         model=ModelConfig(pretrained="none"))
    run_basic_phase(config, tmp_path)
    with pytest.raises(ValueError, match="different settings"):
        run_basic_phase(tiny_config(data=DataConfig(size=32, subjects=7)), tmp_path)


def test_cli_trains_one_fold_and_prints_a_summary(tmp_path, capsys):
    status = main(["train-basic", "--out", str(tmp_path), "--folds", "2", "--fold", "1", "--subjects", "6",
                   "--size", "32", "--set", "head_epochs=1", "--set", "finetune_epochs=1",
                   "--set", "model.pretrained=none", "--set", "progress=false"])
    assert status == 0
    text = capsys.readouterr().out
    assert "fold  1: test accuracy" in text and "selected fold 1" in text
    assert (tmp_path / "fold_1" / "metrics.json").exists()


def test_cli_rejects_a_fold_out_of_range(tmp_path, capsys):
    assert main(["train-basic", "--out", str(tmp_path), "--folds", "3", "--fold", "3", "--subjects", "6"]) == 2
    assert "fold must be in [0, 3)" in capsys.readouterr().err


def test_fine_tuning_on_cached_activations_gives_the_same_model(tmp_path):
    # without augmentation the fine-tuning stage trains on the frozen blocks' activations, computed once
    from cfer.core.trunk import FeatureCacheConfig

    settings = dict(data=DataConfig(size=32, subjects=12), head_epochs=2, finetune_epochs=2, patience=10,
                    model=ModelConfig(pretrained="none", trainable_blocks=2))
    cached = run_basic_phase(tiny_config(**settings), tmp_path / "cached")
    on_images = run_basic_phase(tiny_config(**settings, feature_cache=FeatureCacheConfig(mode="never")),
                                tmp_path / "images")
    histories = [json.loads((tmp_path / name / "fold_0" / "metrics.json").read_text())["history"]
                 for name in ("cached", "images")]
    assert histories[0].keys() == histories[1].keys()
    for key in histories[0]:  # the same sums in another order: another thread count moves their last bits
        assert histories[0][key] == pytest.approx(histories[1][key], rel=1e-6, abs=1e-9), key
    assert cached["best_fold_test"]["confusion_matrix"] == on_images["best_fold_test"]["confusion_matrix"]


def test_an_action_unit_head_trains_beside_the_classes_and_is_scored_on_test_subjects(tmp_path):
    settings = dict(data=DataConfig(size=32, subjects=12), head_epochs=3, finetune_epochs=2, patience=10,
                    model=ModelConfig(pretrained="none", trainable_blocks=1))
    with_aus = run_basic_phase(tiny_config(**settings, au_weight=5.0), tmp_path / "aus")
    scores = with_aus["best_fold_test"]["action_units"]
    shown = [value for value in scores["f1"].values() if value is not None]
    assert shown and all(0.0 <= value <= 1.0 for value in shown)
    assert scores["mean_f1"] == pytest.approx(sum(shown) / len(shown))
    from cfer.cli import format_basic_summary

    assert f"action units on test: mean F1 {scores['mean_f1']:.3f}" in format_basic_summary(with_aus, tmp_path)
    # the AU loss reaches the fine-tuned blocks: against a weight too small to matter (the same random
    # draws), the backbone differs
    run_basic_phase(tiny_config(**settings, au_weight=1e-12), tmp_path / "negligible")
    models = [load_basic_model(tmp_path / name)[0].state_dict() for name in ("negligible", "aus")]
    changed = [key for key in models[0] if not torch.allclose(models[0][key], models[1][key], atol=1e-5)]
    assert any(key.startswith("backbone.") for key in changed)


def test_an_action_unit_head_needs_au_labels(tmp_path):
    from cfer.data.dataset import FaceExpressionDataset

    config = tiny_config(data=DataConfig(size=32, subjects=6), au_weight=1.0, model=ModelConfig(pretrained="none"))
    images = torch.zeros(12, 3, 32, 32, dtype=torch.uint8)
    targets = torch.arange(6).repeat(2)
    dataset = FaceExpressionDataset(images, targets, BASIC, subject_ids=torch.arange(12) // 2)
    with pytest.raises(ValueError, match="au_weight=1.0 needs action-unit labels"):
        run_basic_phase(config, tmp_path, dataset=dataset)
