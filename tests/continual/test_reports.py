"""Aggregation of runs over class orders."""

from __future__ import annotations

import numpy as np
import pytest

from cfer.continual.reports import _aggregate


def _run(step_accuracy: list[float], seconds: list[float]) -> dict:
    steps = [{"num_classes": 6 + i, "wall_seconds": s} for i, s in enumerate(seconds)]
    return {
        "step_accuracy": step_accuracy,
        "steps": steps,
        "complete": True,
        "offline": False,
        "final_accuracy": step_accuracy[-1],
        "final_basic_accuracy": None,
        "final_compound_accuracy": None,
        "average_forgetting": 0.0,
        "backward_transfer": 0.0,
        "wall_seconds": sum(seconds),
        "cpu_seconds": sum(seconds),
    }


def test_overall_accuracy_and_step_time_over_orders() -> None:
    runs = [_run([0.8, 0.6, 0.4], [1.0, 10.0, 20.0]), _run([0.8, 0.5, 0.2], [1.0, 30.0, 40.0])]
    aggregate = _aggregate(runs)
    per_order = [np.mean([0.8, 0.6, 0.4]), np.mean([0.8, 0.5, 0.2])]
    assert aggregate["overall_accuracy"] == pytest.approx(np.mean(per_order))
    assert aggregate["overall_accuracy_std"] == pytest.approx(np.std(per_order))
    assert aggregate["step_accuracy_std"] == pytest.approx([0.0, 0.05, 0.1])
    # the basic step (experience 0) is not an incremental step
    assert aggregate["step_seconds"]["mean"] == pytest.approx(np.mean([15.0, 35.0]))
    assert aggregate["step_seconds"]["std"] == pytest.approx(10.0)
    assert aggregate["final_accuracy"]["mean"] == pytest.approx(0.3)
    assert aggregate["final_basic_accuracy"] == {"mean": None, "std": None}


@pytest.mark.parametrize("protocol, fold_on_test, stop_on_test, flagged", [
    ("held-out", False, False, []),
    ("held-out", True, False, ["the basic phase's fold"]),
    ("reference", True, True, ["the basic phase's fold", "each step's early stopping"]),
])
def test_what_was_chosen_on_test_is_recorded_and_said_in_results_md(tmp_path, protocol, fold_on_test, stop_on_test,
                                                                    flagged) -> None:
    from cfer.continual.reports import describe_protocol, write_reports

    described = describe_protocol(protocol, fold_on_test, stop_on_test)
    assert described == {"name": protocol, "chosen_on_test": flagged}
    summary = write_reports(tmp_path, {"naive": [_run([0.8, 0.6], [1.0, 2.0])]}, basic={}, subjects={"test": [1]},
                            wall_seconds=1.0, cpu_seconds=1.0, confusion_plots="none", protocol=described)
    assert summary["protocol"] == described
    text = (tmp_path / "results.md").read_text()
    assert ("held-out test subjects" in text) == (not flagged)
    assert ("**Selected on test**" in text) == bool(flagged)
    assert all(item in text for item in flagged)
