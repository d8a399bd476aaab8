"""Nothing that chooses reads the test subjects: early stopping and the fold carried on.

Each test replaces the test subjects' faces by noise, or their scores by their opposite, and checks
that every choice comes out the same. Mutation check, by hand when this file was written: pointing
the early stopper or the fold choice at the test split makes the matching test fail. The continual
phase's early stopping and RanPAC's λ have the same test in ``tests/continual/test_runner.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cfer.data.dataset import FaceExpressionDataset
from cfer.data.sources import DataConfig, load_dataset
from cfer.data.splits import assign_splits
from cfer.models.classifier import ModelConfig
from cfer.training.basic import BasicPhaseConfig, basic_classes, load_basic_model, run_basic_phase


def noised(dataset: FaceExpressionDataset, rows: torch.Tensor) -> FaceExpressionDataset:
    """A copy of ``dataset`` whose images at ``rows`` (a boolean mask) are noise."""
    copy = dataset.subset(torch.arange(len(dataset)))
    copy.images[rows] = torch.randint(0, 256, copy.images[rows].shape, dtype=torch.uint8,
                                      generator=torch.Generator().manual_seed(7))
    return copy


def _config(**changes) -> BasicPhaseConfig:
    settings = dict(data=DataConfig(size=32, subjects=12), model=ModelConfig(pretrained="none", trainable_blocks=1),
                    folds=4, fold=0, head_epochs=4, finetune_epochs=3, patience=2, batch_size=32, progress=False)
    settings.update(changes)
    return BasicPhaseConfig(**settings)


def test_basic_phase_early_stopping_never_reads_the_test_subjects(tmp_path: Path) -> None:
    config = _config()
    dataset = load_dataset(config.data, basic_classes(config))
    test_rows = torch.from_numpy(assign_splits(dataset, 0, config.folds, config.val_fraction, config.seed,
                                               config.data.split) == 2)
    assert test_rows.any() and not test_rows.all()
    clean = run_basic_phase(config, tmp_path / "clean", dataset=dataset)
    poisoned = run_basic_phase(config, tmp_path / "noised", dataset=noised(dataset, test_rows))
    histories = [json.loads((tmp_path / name / "fold_0" / "metrics.json").read_text())["history"]
                 for name in ("clean", "noised")]
    assert histories[0] == histories[1]  # every epoch's train and validation loss, so the same stops
    assert clean["folds"][0]["epochs"] == poisoned["folds"][0]["epochs"]
    models = [load_basic_model(tmp_path / name)[0].state_dict() for name in ("clean", "noised")]
    assert all(torch.equal(models[0][key], models[1][key]) for key in models[0])  # the same model, to the bit


def test_the_fold_carried_on_is_chosen_on_validation_not_on_test(tmp_path: Path) -> None:
    config = _config(fold=None, folds=2, head_epochs=1, finetune_epochs=0)
    summary = run_basic_phase(config, tmp_path)
    ranked = sorted(summary["folds"], key=lambda fold: (fold["val_accuracy"], -fold["fold"]))
    chosen, other = ranked[-1]["fold"], ranked[0]["fold"]
    assert summary["best_fold"] == chosen
    for fold in (chosen, other):  # make the fold that validation ranks lower the better one on test, by far
        path = tmp_path / f"fold_{fold}" / "metrics.json"
        metrics = json.loads(path.read_text())
        metrics["test"]["accuracy"] = 0.0 if fold == chosen else 1.0
        path.write_text(json.dumps(metrics))
    again = run_basic_phase(config, tmp_path)  # the finished folds are reused, and the summary chooses again
    assert again["best_fold"] == chosen
    assert again["test_accuracy_mean"] == 0.5  # it did read the rewritten scores
