"""The comparison: paired statistics, and ``cfer compare`` end to end on tiny settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import numpy as np
from scipy.stats import t as student_t

from cfer.config import load_config
from cfer.continual.compare import CompareConfig, run_comparison, seed_paired_test


def test_the_data_seed_is_the_unit_of_the_paired_test() -> None:
    # two seeds x 3 orders, and a third seed with one order; one stream only the row has
    ours = {(1, 0): 0.50, (1, 1): 0.60, (1, 2): 0.70, (2, 0): 0.40, (2, 1): 0.40, (2, 2): 0.46, (3, 0): 0.9,
            (4, 0): 0.99}
    theirs = {(1, 0): 0.45, (1, 1): 0.55, (1, 2): 0.50, (2, 0): 0.42, (2, 1): 0.43, (2, 2): 0.40, (3, 0): 0.8}
    result = seed_paired_test(ours, theirs)
    per_seed = [(0.05 + 0.05 + 0.20) / 3, (-0.02 - 0.03 + 0.06) / 3, 0.10]  # by hand
    assert [entry["seed"] for entry in result["per_seed"]] == [1, 2, 3]
    assert [entry["difference"] for entry in result["per_seed"]] == pytest.approx(per_seed)
    assert [entry["orders"] for entry in result["per_seed"]] == [3, 3, 1]
    assert result["per_seed"][0]["order_std"] == pytest.approx(np.std([0.05, 0.05, 0.20]))
    assert result["mean_difference"] == pytest.approx(np.mean(per_seed))
    assert result["seeds"] == 3 and result["ahead_on"] == 3
    differences = np.asarray(per_seed)
    t = differences.mean() / (differences.std(ddof=1) / np.sqrt(3))
    assert result["p_value"] == pytest.approx(2 * student_t.sf(abs(t), df=2))
    # one seed, or no spread across seeds: the test is undefined
    assert seed_paired_test({(1, 0): 0.5, (1, 1): 0.7}, {(1, 0): 0.4, (1, 1): 0.4})["p_value"] is None
    assert seed_paired_test({(1, 0): 0.5, (2, 0): 0.5}, {(1, 0): 0.4, (2, 0): 0.4})["p_value"] is None


TINY = [
    "run.basic.data.subjects=10", "run.basic.data.size=32", "run.basic.model.backbone=test_efficientnet",
    "run.basic.model.pretrained=none", "run.basic.folds=3", "run.basic.val_fraction=0.25", "run.basic.head_epochs=1",
    "run.basic.finetune_epochs=1", "run.epochs=1", "run.patience=1", "run.batch_size=16", "run.confusion_plots=last-step",
    "tested=[ranpac, ncm]", "recommended=ranpac", "others=[naive]", "reference_strategies=[naive]", "orders=2",
    "other_orders=1", "data_seeds=[1]",
]


def test_compare_writes_the_table_the_plot_and_the_tests(tmp_path: Path) -> None:
    summary = run_comparison(load_config(CompareConfig, overrides=TINY), tmp_path)
    for name in ("comparison.json", "comparison.md", "accuracy_vs_classes.png", "seed_1/results.json",
                 "reference_seed_1/results.json"):
        assert (tmp_path / name).is_file(), name
    table = summary["strategies"]
    assert set(table) == {"ranpac", "ncm", "naive", "naive (reference protocol)"}
    versus = table["ncm"]["versus_recommended"]["overall_accuracy"]
    assert table["ncm"]["runs"] == 2 and versus["seeds"] == 1 and versus["per_seed"][0]["orders"] == 2
    assert versus["p_value"] is None  # one data seed: two orders of it are not two samples
    assert table["naive"]["runs"] == 1 and table["naive"]["versus_recommended"]["overall_accuracy"]["seeds"] == 1
    runs = [json.loads((tmp_path / "seed_1" / "runs" / "ncm" / f"order_{k}" / "result.json").read_text())
            for k in range(2)]
    expected = sum(run["average_step_accuracy"] for run in runs) / 2
    assert table["ncm"]["overall_accuracy"]["mean"] == pytest.approx(expected)
    markdown = (tmp_path / "comparison.md").read_text()
    assert "| `ncm` | 2 |" in markdown and "t-test" in markdown and "Wilcoxon" not in markdown
    # under the reference protocol each step early-stops on the very images it reports
    reference = json.loads((tmp_path / "reference_seed_1" / "results.json").read_text())
    for step in reference["strategies"]["naive"]["runs"][0]["steps"][1:]:
        assert step["valid_metric"] == pytest.approx(step["accuracy"], abs=1e-6)
    # and its basic phase ran every fold and kept the one that scored best on the subjects it reports
    basic = json.loads((tmp_path / "reference_seed_1" / "basic" / "metrics.json").read_text())
    assert [fold["fold"] for fold in basic["folds"]] == [0, 1, 2]
    best = max(basic["folds"], key=lambda fold: (fold["test_accuracy"], -fold["fold"]))
    assert basic["best_fold"] == best["fold"]


def test_a_strategy_scored_differently_says_so_beside_the_table() -> None:
    from cfer.continual.compare import _caveats

    lines = _caveats(["ranpac", "joint", "joint (reference protocol)", "naive"])
    assert len(lines) == 2 and lines[1].startswith("- `joint`: ") and "all 21 outputs live" in lines[1]
    assert _caveats(["ranpac", "ncm"]) == []
