"""examples/reproduce_figures.py: the README is what docs/figures.json renders, and a changed figure is caught."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def script() -> dict:
    return runpy.run_path(str(ROOT / "examples" / "reproduce_figures.py"), run_name="reproduce_figures")


def _record(figures: dict, checked: tuple[str, ...] = ()) -> dict:
    return {"figures": figures, "checked": list(checked), "commands": ["cfer train-incremental"], "commit": "abc1234",
            "machine": "2 cores of a test CPU", "date": "2026-12-06", "load_average": 0.5, "wall_seconds": 125.0,
            "peak_memory_gb": 1.5}


def test_the_readme_is_what_the_figures_file_renders(script: dict) -> None:
    figures = script["load_figures"]()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert script["unknown_markers"](text, figures) == []
    assert script["render_readme"](text, figures) == text, \
        "README.md differs from docs/figures.json: run python examples/reproduce_figures.py --readme"


def test_render_replaces_values_tables_and_stamps_of_measured_parts_only(script: dict) -> None:
    figures = {"run": _record({"accuracy": "47.6", "steps": "| a |\n|---|\n| 1 |"})}
    text = ("Acc <!--fig:run.accuracy-->40.0<!--/fig-->%, other <!--fig:other.x-->3<!--/fig-->\n"
            "<!--fig:run.steps-->\n| old |\n<!--/fig-->\n(<!--fig:run.stamp-->historical<!--/fig-->)")
    rendered = script["render_readme"](text, figures)
    assert "Acc <!--fig:run.accuracy-->47.6<!--/fig-->%" in rendered
    assert "<!--fig:other.x-->3<!--/fig-->" in rendered  # a part never measured keeps its text
    assert "<!--fig:run.steps-->\n| a |\n|---|\n| 1 |\n<!--/fig-->" in rendered
    assert "measured at commit abc1234 on 2 cores of a test CPU" in rendered and "2 min 5 s wall" in rendered
    assert script["render_readme"](rendered, figures) == rendered
    assert script["unknown_markers"]("<!--fig:run.nothing-->1<!--/fig-->", figures) == ["run.nothing"]


def test_a_changed_checked_figure_is_a_difference_and_a_timing_is_not(script: dict) -> None:
    stated = {"run": _record({"accuracy": "47.6", "seconds": "80"}, checked=("accuracy",))}
    same = {"run": _record({"accuracy": "47.6", "seconds": "95"}, checked=("accuracy",))}
    moved = {"run": _record({"accuracy": "47.5", "seconds": "80"}, checked=("accuracy",))}
    assert script["differences"](stated, same) == []
    assert script["differences"](stated, moved) == [
        "run.accuracy: README/docs/figures.json say '47.6', HEAD gives '47.5'"]
    assert len(script["differences"]({}, moved)) == 1  # a part the file lacks differs too


def test_default_run_figures_read_the_runners_results(script: dict, tmp_path: Path) -> None:
    aggregate = {"overall_accuracy": 0.47618, "step_accuracy_mean": [0.768, 0.6771],
                 "average_macro_f1": {"mean": 0.4809}, "final_accuracy": {"mean": 0.3478},
                 "final_basic_accuracy": {"mean": 0.3986}, "final_compound_accuracy": {"mean": 0.3275},
                 "average_forgetting": {"mean": 0.158}, "backward_transfer": {"mean": -0.0594},
                 "wall_seconds": {"mean": 64.4}, "step_seconds": {"mean": 4.29}}
    per_class = {"happy": {"f1": 0.757}, "sad": {"f1": 0.691}, "surprised": {"f1": 0.88}}
    results = {"strategies": {"cfer": {"aggregate": aggregate}}, "subjects": {"test": list(range(23))},
               "basic": {"classes": list(per_class), "wall_seconds": 68.3,
                         "best_fold_test": {"accuracy": 0.76812, "per_class": per_class}}}
    (tmp_path / "incremental").mkdir()
    (tmp_path / "incremental" / "results.json").write_text(json.dumps(results), encoding="utf-8")
    figures = script["default_run_figures"](tmp_path)
    assert {key: figures[key] for key in ("basic_test_accuracy", "basic_chance", "overall_accuracy", "bwt",
                                          "basic_weakest_f1", "test_subjects", "step_seconds")} == {
        "basic_test_accuracy": "0.768", "basic_chance": "0.333", "overall_accuracy": "47.6", "bwt": "−5.9",
        "basic_weakest_f1": "0.69 for sad", "test_subjects": "23", "step_seconds": "4.3"}
    assert figures["steps"].splitlines()[-1] == "| accuracy (%) | 76.8 | 67.7 |"
    assert set(script["PARTS"]["default_run"].checked) <= set(figures)
