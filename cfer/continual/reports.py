"""Results of the continual phase: per-run summaries, aggregates over orders, JSON, Markdown, plots.

Per run (one strategy, one order): accuracy after every step on the classes seen so far, on the basic
and on the compound ones, a confusion matrix per step, forgetting and BWT
(:mod:`cfer.continual.metrics`) and time per step. Per strategy, over orders: the paper's Overall
Accuracy and the mean and standard deviation of every step's accuracy, plotted against the number of
observed classes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cfer.continual.benchmark import IncrementalBenchmark
from cfer.continual.metrics import (
    average_forgetting,
    backward_transfer,
    macro_f1,
    overall_accuracy,
)
from cfer.io import atomic_write_text, save_figure, write_json
from cfer.reports import AXES, plot_confusion_matrix

__all__ = ["format_incremental_summary", "plot_accuracy_curves", "summarize_run", "write_reports"]

logger = logging.getLogger(__name__)


def _group_accuracy(matrix: np.ndarray, rows: range) -> float | None:
    """Accuracy over the images whose true class is in ``rows``; None if there are none."""
    selected = matrix[list(rows)]
    total = selected.sum()
    if total == 0:
        return None
    return float(sum(matrix[row, row] for row in rows) / total)


def summarize_run(
    name: str,
    benchmark: IncrementalBenchmark,
    steps: Sequence[Mapping[str, Any]],
    memory_size: int,
    offline: bool = False,
) -> dict[str, Any]:
    """Summary of one strategy's run over one order.

    Args:
        name: Strategy name.
        benchmark: The stream it ran on.
        steps: One record per finished experience, as the runner makes them (``accuracy``,
            ``experience_accuracy``, ``confusion_matrix``, timings ...).
        memory_size: The replay budget it was given.
        offline: Whether one model was trained on the whole stream and evaluated on its prefixes
            (joint training); its runs have no per-step time.

    Returns:
        JSON-ready dict: the steps (with ``basic_accuracy`` and ``compound_accuracy`` added), the
        step accuracies, their mean, the final accuracies, forgetting, BWT and total times.
    """
    records = []
    for step in steps:
        matrix = np.asarray(step["confusion_matrix"])
        seen = benchmark.num_basic + int(step["step"])
        records.append(
            dict(step)
            | {
                "basic_accuracy": _group_accuracy(matrix, range(benchmark.num_basic)),
                "compound_accuracy": _group_accuracy(matrix, range(benchmark.num_basic, seen)),
                "macro_f1": macro_f1(matrix, seen),
            }
        )
    rows = [step["experience_accuracy"] for step in records]
    last = records[-1] if records else None
    return _affect_summary(records) | {
        "strategy": name,
        "order": list(benchmark.classes[benchmark.num_basic :]),
        "classes": list(benchmark.classes),
        "memory_size": memory_size,
        "offline": offline,
        "complete": len(records) == benchmark.n_experiences,
        "step_accuracy": [step["accuracy"] for step in records],
        "average_step_accuracy": float(np.mean([s["accuracy"] for s in records])) if records else None,
        "final_accuracy": last["accuracy"] if last else None,
        "final_basic_accuracy": last["basic_accuracy"] if last else None,
        "final_compound_accuracy": last["compound_accuracy"] if last else None,
        "average_macro_f1": float(np.mean([s["macro_f1"] for s in records])) if records else None,
        "final_macro_f1": last["macro_f1"] if last else None,
        "average_forgetting": average_forgetting(rows) if rows else None,
        "backward_transfer": backward_transfer(rows) if rows else None,
        "wall_seconds": float(sum(s["wall_seconds"] for s in records)),
        "cpu_seconds": float(sum(s["cpu_seconds"] for s in records)),
        "steps": records,
    }


AFFECT_FIELDS = tuple(f"{when}_{axis}_{metric}" for when in ("basic", "final") for axis in AXES
                      for metric in ("rmse", "ccc"))
"""Valence/arousal figures of a run: the basic model's (step 0) and the final model's, on every test image."""


def _affect_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """:data:`AFFECT_FIELDS` from the first and last steps' ``affect`` records (empty when they have none)."""
    if not records or "affect" not in records[0] or "affect" not in records[-1]:
        return {}
    ends = {"basic": records[0]["affect"]["all"], "final": records[-1]["affect"]["all"]}
    return {f"{when}_{axis}_{metric}": ends[when][axis][metric] for when in ends for axis in AXES
            for metric in ("rmse", "ccc")}


def _mean_std(values: Sequence[float | None]) -> dict[str, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(present)), "std": float(np.std(present))}


def _aggregate(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    length = min(len(run["step_accuracy"]) for run in runs)
    steps = np.asarray([run["step_accuracy"][:length] for run in runs], dtype=float)
    fields = (
        "final_accuracy",
        "final_basic_accuracy",
        "final_compound_accuracy",
        "average_macro_f1",
        "final_macro_f1",
        "average_forgetting",
        "backward_transfer",
        "wall_seconds",
        "cpu_seconds",
        *AFFECT_FIELDS,
    )
    # the time of an incremental step (experience 0 only registers the basic classes)
    step_seconds = [
        float(np.mean([step["wall_seconds"] for step in run["steps"][1:]]))
        if len(run["steps"]) > 1 and not run.get("offline")
        else None
        for run in runs
    ]
    return {
        "orders": len(runs),
        "step_seconds": _mean_std(step_seconds),
        "complete": all(run["complete"] for run in runs),
        "overall_accuracy": overall_accuracy(steps) if length else None,
        # spread over orders of each order's own step average
        "overall_accuracy_std": float(steps.mean(axis=1).std()) if length else None,
        "step_accuracy_mean": steps.mean(axis=0).tolist(),
        "step_accuracy_std": steps.std(axis=0).tolist(),
        "num_classes": [int(step["num_classes"]) for step in runs[0]["steps"][:length]],
    } | {name: _mean_std([run.get(name) for run in runs]) for name in fields}


def plot_accuracy_curves(aggregates: Mapping[str, Mapping[str, Any]], path: str | Path) -> Path:
    """Accuracy on the seen classes against the number of observed classes, one line per strategy.

    The band is the mean plus or minus one standard deviation over orders.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, aggregate in aggregates.items():
        x = np.asarray(aggregate["num_classes"])
        mean = np.asarray(aggregate["step_accuracy_mean"])
        std = np.asarray(aggregate["step_accuracy_std"])
        label = f"{name} (overall {aggregate['overall_accuracy']:.3f})"
        (line,) = axis.plot(x, mean, marker="o", markersize=3, label=label)
        axis.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    axis.set_xlabel("number of observed classes")
    axis.set_ylabel("test accuracy on the observed classes")
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    orders = max((a["orders"] for a in aggregates.values()), default=0)
    axis.set_title(f"class-incremental accuracy (mean ± std over {orders} order(s))")
    return save_figure(figure, path)


def _plot_run_confusions(run: Mapping[str, Any], folder: Path, every_step: bool) -> None:
    """Confusion matrices of every step, or of the last one only (every matrix is in results.json)."""
    classes = run["classes"]
    for step in run["steps"] if every_step else run["steps"][-1:]:
        path = folder / f"step_{int(step['step']):02d}.png"
        if path.exists():
            continue
        seen = int(step["num_classes"])
        matrix = [row[:seen] for row in step["confusion_matrix"][:seen]]
        title = f"{run['strategy']} step {step['step']} (+{', '.join(step['new_classes'])}): accuracy {step['accuracy']:.3f}"
        plot_confusion_matrix(matrix, classes[:seen], path, title=title)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def describe_protocol(name: str, fold_on_test: bool, early_stopping_on_test: bool) -> dict[str, Any]:
    """What a run's figures may be trusted for: its protocol and what it chose on its test subjects.

    Args:
        name: ``held-out`` or ``reference``.
        fold_on_test: The basic phase's fold was chosen on test accuracy (``select_fold_on=test``).
        early_stopping_on_test: Each step early-stopped on the test images it reports.
    """
    chosen = (["the basic phase's fold"] if fold_on_test else []) + (
        ["each step's early stopping"] if early_stopping_on_test else [])
    return {"name": name, "chosen_on_test": chosen}


def _subjects_line(protocol: Mapping[str, Any]) -> str:
    chosen = list(protocol.get("chosen_on_test") or [])
    if not chosen:
        return "Accuracy (%) on the held-out test subjects"
    return (f"**Selected on test** ({protocol.get('name', 'held-out')} protocol: {' and '.join(chosen)} chosen on "
            "the very test subjects reported, so these figures are optimistic). Accuracy (%) on those test subjects")


def _markdown(summary: Mapping[str, Any]) -> str:
    strategies = summary["strategies"]
    lines = [
        "# Continual phase: compound expressions added one at a time",
        "",
        _subjects_line(summary.get("protocol", {})) + ", over the classes seen so far; mean over orders "
        "(± std). Overall accuracy: step accuracies (basic step included) averaged over orders, then "
        "over steps (Maiden & Nakisa 2023); macro-F1: over the classes seen, averaged over steps (the ABAW convention). s / step: mean wall time of an incremental step (training, "
        "memory update, evaluation); × naive: that time relative to naive fine-tuning's.",
        "",
        "| strategy | orders | overall | macro-F1 | final | final basic | final compound | forgetting | BWT | s / step | "
        "× naive | wall s | CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in strategies.items():
        a = entry["aggregate"]

        def cell(field: str) -> str:
            value = a[field]
            if value["mean"] is None:
                return "–"
            return f"{_percent(value['mean'])} ± {_percent(value['std'])}"

        lines.append(
            f"| {name} | {a['orders']}{'' if a['complete'] else ' (partial)'} | "
            f"{_percent(a['overall_accuracy'])} ± {_percent(a['overall_accuracy_std'])} | {cell('average_macro_f1')} | "
            f"{cell('final_accuracy')} | {cell('final_basic_accuracy')} | {cell('final_compound_accuracy')} | "
            f"{cell('average_forgetting')} | {cell('backward_transfer')} | "
            f"{_fmt(a['step_seconds']['mean'], '.1f')} | {_fmt(entry.get('step_seconds_vs_naive'), '.2f')} | "
            f"{a['wall_seconds']['mean'] or 0:.0f} | {a['cpu_seconds']['mean'] or 0:.0f} |"
        )
    names = list(strategies)
    if names:
        lines += ["", "## Accuracy (%) after each step", "", "| step | classes | " + " | ".join(names) + " |",
                  "|---|---|" + "---|" * len(names)]
        first = strategies[names[0]]["aggregate"]
        for index, classes in enumerate(first["num_classes"]):
            cells = []
            for name in names:
                a = strategies[name]["aggregate"]
                if index < len(a["step_accuracy_mean"]):
                    cells.append(f"{_percent(a['step_accuracy_mean'][index])} ± {_percent(a['step_accuracy_std'][index])}")
                else:
                    cells.append("–")
            lines.append(f"| {index} | {classes} | " + " | ".join(cells) + " |")
    lines += _affect_markdown(strategies)
    lines += ["", f"Wall time {summary['wall_seconds']:.0f} s, process CPU time {summary['cpu_seconds']:.0f} s (this session).", ""]
    return "\n".join(lines)


def write_reports(
    out_dir: str | Path,
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    basic: Mapping[str, Any],
    subjects: Mapping[str, Sequence[int]],
    wall_seconds: float,
    cpu_seconds: float,
    feature_cache: Mapping[str, Any] | None = None,
    confusion_plots: str = "first-order",
    protocol: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Writes ``results.json``, ``results.md``, ``accuracy_vs_classes.png`` and per-step confusion matrices.

    Args:
        out_dir: Run directory.
        runs: Per strategy, one summary per order (from :func:`summarize_run`).
        basic: The basic phase's summary.
        subjects: Subjects of each split.
        wall_seconds: Wall time of this session.
        cpu_seconds: Process CPU time of this session.
        feature_cache: Whether the frozen trunk was cached, why, and its size.
        confusion_plots: ``'first-order'`` (every step of the first order, the last step of the
            others), ``'last-step'`` (of every order) or ``'none'``; every matrix is in results.json.
        protocol: ``name`` (``held-out`` or ``reference``) and ``chosen_on_test``, what was chosen on
            the test subjects that the figures are measured on (see :func:`describe_protocol`).

    Returns:
        The summary written to ``results.json``.
    """
    out_dir = Path(out_dir)
    strategies: dict[str, Any] = {}
    for name, name_runs in runs.items():
        for order_index, run in enumerate(name_runs if confusion_plots != "none" else []):
            # a figure costs half a second: every step of the first order only when asked
            every_step = confusion_plots == "first-order" and order_index == 0
            _plot_run_confusions(run, out_dir / "runs" / name / f"order_{order_index}" / "confusion", every_step)
        with_steps = [run for run in name_runs if run["steps"]]
        strategies[name] = {
            "aggregate": _aggregate(with_steps) if with_steps else None,
            "runs": list(name_runs),
        }
    naive = strategies.get("naive", {}).get("aggregate")
    naive_step = naive["step_seconds"]["mean"] if naive else None
    for entry in strategies.values():
        step = entry["aggregate"]["step_seconds"]["mean"] if entry["aggregate"] else None
        entry["step_seconds_vs_naive"] = step / naive_step if step is not None and naive_step else None
    summary = {
        "complete": all(run["complete"] for name_runs in runs.values() for run in name_runs),
        "protocol": dict(protocol or {"name": "held-out", "chosen_on_test": []}),
        "basic": {key: basic.get(key) for key in ("classes", "best_fold", "best_fold_test", "test_accuracy_mean", "wall_seconds")},
        "subjects": {split: list(ids) for split, ids in subjects.items()},
        "wall_seconds": wall_seconds,
        "cpu_seconds": cpu_seconds,
        "feature_cache": dict(feature_cache or {}),
        "strategies": strategies,
    }
    write_json(out_dir / "results.json", summary)
    reported = {name: entry for name, entry in strategies.items() if entry["aggregate"] is not None}
    atomic_write_text(out_dir / "results.md", _markdown(summary | {"strategies": reported}))
    if reported:
        plot_accuracy_curves({name: entry["aggregate"] for name, entry in reported.items()}, out_dir / "accuracy_vs_classes.png")
    return summary


def _affect_markdown(strategies: Mapping[str, Any]) -> list[str]:
    """The valence/arousal table (basic model → final model), or nothing when no run has one."""
    rows = [(name, entry["aggregate"]) for name, entry in strategies.items()
            if entry["aggregate"].get("final_valence_rmse", {}).get("mean") is not None]
    if not rows:
        return []
    lines = ["", "## Valence and arousal", "",
             "Test subjects, every class's images; the basic-phase model (step 0) → the final model, mean over "
             "orders. The regressor is kept by the teacher-bounded loss against the basic model.", "",
             "| strategy | valence RMSE | arousal RMSE | valence CCC | arousal CCC |", "|---|---|---|---|---|"]
    for name, a in rows:
        cells = [f"{_fmt(a[f'basic_{axis}_{metric}']['mean'])} → {_fmt(a[f'final_{axis}_{metric}']['mean'])}"
                 for metric in ("rmse", "ccc") for axis in AXES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def format_incremental_summary(summary: Mapping[str, Any], out_dir: str | Path) -> str:
    """A few lines for the terminal: overall and final accuracies per strategy, and where files are.

    Args:
        summary: What :func:`cfer.continual.run_incremental` returned.
        out_dir: Its run directory.

    Returns:
        The text.
    """
    out_dir = Path(out_dir)
    lines = []
    basic_test = (summary.get("basic") or {}).get("best_fold_test") or {}
    if "accuracy" in basic_test:
        lines.append(f"basic phase: test accuracy {basic_test['accuracy']:.3f} (fold {summary['basic']['best_fold']})")
    for name, entry in summary["strategies"].items():
        a = entry["aggregate"]
        if a is None:
            lines.append(f"{name}: no finished step")
            continue
        state = "" if a["complete"] else " [partial: rerun with the same --out to resume]"
        lines.append(
            f"{name}: overall accuracy {a['overall_accuracy']:.3f} over {a['orders']} order(s); final "
            f"{a['final_accuracy']['mean']:.3f} (basic {_fmt(a['final_basic_accuracy']['mean'])}, "
            f"compound {_fmt(a['final_compound_accuracy']['mean'])}), forgetting "
            f"{_fmt(a['average_forgetting']['mean'])}, BWT {_fmt(a['backward_transfer']['mean'])}{state}"
        )
        if a.get("final_valence_rmse", {}).get("mean") is not None:
            lines.append("  valence/arousal RMSE " + ", ".join(
                f"{axis} {_fmt(a[f'basic_{axis}_rmse']['mean'])} → {_fmt(a[f'final_{axis}_rmse']['mean'])}"
                for axis in AXES) + " (basic model → final, every test image)")
    lines.append(f"time: {summary['wall_seconds']:.0f} s wall, {summary['cpu_seconds']:.0f} s CPU")
    lines.append(f"results: {out_dir / 'results.md'}, {out_dir / 'results.json'}, {out_dir / 'accuracy_vs_classes.png'}")
    return "\n".join(lines)


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)
