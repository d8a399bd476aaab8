"""The comparison: paired statistics, and ``cfer compare`` end to end on tiny settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy.stats import wilcoxon

from cfer.config import load_config
from cfer.continual.compare import CompareConfig, paired_test, run_comparison


def test_paired_test_is_scipys_wilcoxon_on_the_pairs() -> None:
    ours, theirs = [0.5, 0.6, 0.55, 0.7, 0.65, 0.62], [0.4, 0.58, 0.5, 0.6, 0.66, 0.5]
    result = paired_test(ours, theirs)
    assert result["p_value"] == pytest.approx(wilcoxon(ours, theirs).pvalue)
    assert result["mean_difference"] == pytest.approx(sum(o - t for o, t in zip(ours, theirs)) / 6)
    assert result["pairs"] == 6
    assert paired_test([0.5, 0.5], [0.5, 0.5])["p_value"] is None  # no differences: undefined


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
    assert table["ncm"]["runs"] == 2 and table["ncm"]["versus_recommended"]["overall_accuracy"]["pairs"] == 2
    assert table["naive"]["runs"] == 1 and table["naive"]["versus_recommended"]["overall_accuracy"]["pairs"] == 1
    runs = [json.loads((tmp_path / "seed_1" / "runs" / "ncm" / f"order_{k}" / "result.json").read_text())
            for k in range(2)]
    expected = sum(run["average_step_accuracy"] for run in runs) / 2
    assert table["ncm"]["overall_accuracy"]["mean"] == pytest.approx(expected)
    markdown = (tmp_path / "comparison.md").read_text()
    assert "| `ncm` | 2 |" in markdown and "Wilcoxon" in markdown
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
