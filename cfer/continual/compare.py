"""``cfer compare``: every strategy on the same streams, over orders and data seeds, with paired tests.

For each synthetic data seed (new rendered people, so new subjects, a new basic model and new
streams), :func:`run_comparison` runs :func:`cfer.continual.run_incremental` with the ``tested``
strategies over ``orders`` random orders (the paper's 10), then, on the first seed's first
``other_orders`` orders (their rows, at a fraction of the cost), the ``others`` and the
``reference_strategies`` under the reference's protocol, reusing whatever finished before (each
seed's run directory resumes; runs started apart, e.g. one process per seed with the same
settings, are collected as they are; with a :class:`~cfer.distributed.RayConfig`, every run is a Ray
task, see :mod:`cfer.continual.sweep`). It then pools each strategy's (seed, order) runs and writes, to
``out_dir``:

* ``comparison.json``: per strategy, Overall Accuracy (the paper's mean over steps) and macro-F1
  (the ABAW convention), overall and final, as mean ± std over the runs; against the recommended
  strategy, the paired difference on each data seed (mean over the orders both ran on it, and its
  spread over those orders) and a two-sided paired t-test across seeds (scipy). The data seed is the
  unit of replication: the orders of one seed share one basic model and one set of test subjects,
  and a statistics head's final classifier does not depend on the order, so orders are not
  independent samples and no test treats them as such;
* ``comparison.md``: the table, with the budget and the seeds;
* ``accuracy_vs_classes.png``: accuracy against classes seen, one line per strategy, mean ± std band.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import ttest_1samp

from cfer.config import save_config
from cfer.continual.config import IncrementalConfig
from cfer.continual.reports import plot_accuracy_curves
from cfer.continual.runner import run_incremental
from cfer.continual.sweep import run_incremental_sweep
from cfer.distributed.ray_sweep import RayConfig
from cfer.io import atomic_write_text, write_json
from strategies.registry import STRATEGIES

__all__ = ["CompareConfig", "run_comparison", "seed_paired_test"]

logger = logging.getLogger(__name__)

_REPORTED = ("overall_accuracy", "average_macro_f1", "final_accuracy", "final_macro_f1", "final_basic_accuracy",
             "final_compound_accuracy")


@dataclass(frozen=True)
class CompareConfig:
    """The comparison: strategies, orders and data seeds on the settings of ``cfer train-incremental``."""

    run: IncrementalConfig = field(default_factory=IncrementalConfig)  # every run's settings (budget, model, data)
    tested: list[str] = field(default_factory=lambda: ["cfer", "ncm", "ranpac"])  # every seed and order
    others: list[str] = field(default_factory=lambda: [
        "cfer-random-memory", "replay-balanced", "replay", "naive", "lwf", "ewc", "gdumb", "icarl", "joint"])
    recommended: str = "cfer"  # the strategy tested against each other one; one of `tested`
    orders: int = 10  # random orders of the compound classes per data seed (paper: 10)
    other_orders: int = 3  # orders of the first seed that the `others` run
    data_seeds: list[int] = field(default_factory=lambda: [1, 2, 3])  # synthetic seeds; 0 chose the budget
    reference_strategies: list[str] = field(default_factory=lambda: ["cfer"])  # also under the reference protocol


def seed_paired_test(ours: Mapping[tuple[int, int], float], theirs: Mapping[tuple[int, int], float]
                     ) -> dict[str, Any]:
    """Paired comparison with the data seed as the unit: per-seed mean differences, a t-test across seeds.

    Args:
        ours: One score per stream, keyed by (data seed, order index).
        theirs: The other strategy's scores, keyed the same way; only the streams both have count.

    Returns:
        ``mean_difference`` (ours - theirs, the mean of the per-seed differences), ``per_seed`` (per
        seed: ``seed``, ``difference``, ``orders``, ``order_std``, the spread of the per-order
        differences inside the seed), ``seeds``, ``ahead_on`` (seeds where ours is higher), ``p_value``
        (two-sided paired t-test across seeds; None with fewer than two seeds or no spread, where it
        is undefined) and ``test``.
    """
    streams = sorted(set(ours) & set(theirs))
    by_seed: dict[int, list[float]] = {}
    for seed, order in streams:
        by_seed.setdefault(seed, []).append(ours[seed, order] - theirs[seed, order])
    per_seed = [{"seed": seed, "difference": float(np.mean(values)), "orders": len(values),
                 "order_std": float(np.std(values))} for seed, values in sorted(by_seed.items())]
    differences = np.asarray([entry["difference"] for entry in per_seed], dtype=float)
    p_value = None
    if len(differences) >= 2 and np.ptp(differences) > 0:
        p_value = float(ttest_1samp(differences, 0.0).pvalue)
    return {"mean_difference": float(differences.mean()) if len(differences) else None, "per_seed": per_seed,
            "seeds": len(per_seed), "ahead_on": int((differences > 0).sum()), "p_value": p_value,
            "test": "two-sided paired t-test across data seeds"}


def run_comparison(config: CompareConfig, out_dir: str | Path, ray: RayConfig | None = None) -> dict[str, Any]:
    """Runs (or reuses) every strategy over every seed and order, then writes the comparison.

    Args:
        config: The comparison.
        out_dir: Its directory: ``seed_<s>/`` and ``reference_seed_<s>/`` hold the runs.
        ray: Run every (strategy, seed, order) run as a Ray task there; None runs them here, one after
            the other.

    Returns:
        The summary written to ``comparison.json``.

    Raises:
        cfer.distributed.SweepError: If runs failed on Ray; the others' results are kept, and a rerun
            runs only what is missing.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, out_dir / "compare.yaml")
    start = time.perf_counter()
    if config.recommended not in config.tested:
        raise ValueError(f"the recommended strategy {config.recommended!r} must be one of tested {config.tested}")
    sessions = _sessions(config, out_dir)
    if ray is None:
        summaries = [run_incremental(session.config, session.out_dir) for session in sessions]
    else:
        summaries = run_incremental_sweep(out_dir, [(session.config, session.out_dir) for session in sessions], ray)
    runs: dict[str, dict[tuple[int, int], Mapping[str, Any]]] = {}
    for session, session_summary in zip(sessions, summaries):
        _collect(runs, session.seed, session_summary, suffix=session.suffix)
    summary = _summarize(config, runs, time.perf_counter() - start)
    write_json(out_dir / "comparison.json", summary)
    atomic_write_text(out_dir / "comparison.md", _markdown(config, summary))
    plot_accuracy_curves(summary["curves"], out_dir / "accuracy_vs_classes.png")
    return summary


@dataclass(frozen=True)
class _Session:
    """One ``run_incremental`` call of the comparison."""

    seed: int  # the synthetic data seed
    config: IncrementalConfig
    out_dir: Path
    suffix: str  # added to its strategies' names in the table


def _sessions(config: CompareConfig, out_dir: Path) -> list[_Session]:
    """Per data seed, the tested strategies; on the first, the others and the reference protocol too."""
    sessions = []
    for index, seed in enumerate(config.data_seeds):
        seed_dir = out_dir / f"seed_{seed}"
        sessions.append(_Session(seed, _seeded(config, seed, config.tested, config.orders, "held-out"), seed_dir, ""))
        if index == 0 and config.others:
            others = _seeded(config, seed, config.others, config.other_orders, "held-out")
            sessions.append(_Session(seed, others, seed_dir, ""))
        if index == 0 and config.reference_strategies:
            reference = _seeded(config, seed, config.reference_strategies, config.other_orders, "reference")
            sessions.append(_Session(seed, reference, out_dir / f"reference_seed_{seed}", " (reference protocol)"))
    return sessions


def _seeded(config: CompareConfig, seed: int, strategies: list[str], orders: int, protocol: str) -> IncrementalConfig:
    basic = config.run.basic
    basic = dataclasses.replace(basic, data=dataclasses.replace(basic.data, seed=seed))
    return dataclasses.replace(config.run, basic=basic, strategies=list(strategies), orders=orders,
                               protocol=protocol, class_order=None)  # type: ignore[arg-type]


def _collect(runs: dict[str, dict[tuple[int, int], Mapping[str, Any]]], seed: int, summary: Mapping[str, Any],
             suffix: str = "") -> None:
    """Adds a session's runs, keyed by (data seed, order index): the stream they ran on."""
    for name, entry in summary["strategies"].items():
        for order, run in enumerate(entry["runs"]):
            runs.setdefault(name + suffix, {})[(seed, order)] = run


def _run_scores(run: Mapping[str, Any]) -> dict[str, float | None]:
    scores: dict[str, float | None] = {name: run.get(name) for name in _REPORTED if name != "overall_accuracy"}
    scores["overall_accuracy"] = run["average_step_accuracy"]
    return scores


def _scores_of(by_stream: Mapping[tuple[int, int], Mapping[str, Any]], metric: str) -> dict[tuple[int, int], float]:
    scores = {stream: _run_scores(run)[metric] for stream, run in by_stream.items()}
    return {stream: float(value) for stream, value in scores.items() if value is not None}


def _summarize(config: CompareConfig, keyed: Mapping[str, Mapping[tuple[int, int], Mapping[str, Any]]],
               seconds: float) -> dict[str, Any]:
    table: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    runs = {name: list(by_stream.values()) for name, by_stream in keyed.items()}
    for name, name_runs in runs.items():
        scores = [_run_scores(run) for run in name_runs]
        steps = np.asarray([run["step_accuracy"] for run in name_runs], dtype=float)
        table[name] = {metric: _mean_std([score[metric] for score in scores]) for metric in _REPORTED}
        table[name]["runs"] = len(name_runs)
        step_seconds = [np.mean([s["wall_seconds"] for s in run["steps"][1:]]) for run in name_runs
                        if not run.get("offline")]
        table[name]["seconds_per_step"] = float(np.mean(step_seconds)) if step_seconds else None
        curves[name] = {"num_classes": [s["num_classes"] for s in name_runs[0]["steps"]],
                        "step_accuracy_mean": steps.mean(0).tolist(), "step_accuracy_std": steps.std(0).tolist(),
                        "overall_accuracy": float(steps.mean()), "orders": len(name_runs)}
    recommended = keyed.get(config.recommended, {})
    for name, by_stream in keyed.items():
        if name == config.recommended or not set(by_stream) & set(recommended):
            continue
        table[name]["versus_recommended"] = {
            metric: seed_paired_test(_scores_of(by_stream, metric), _scores_of(recommended, metric))
            for metric in ("overall_accuracy", "average_macro_f1")
        }
    return {"strategies": table, "curves": curves, "recommended": config.recommended, "seeds": config.data_seeds,
            "orders": config.orders, "wall_seconds": seconds,
            "budget": {"epochs": config.run.epochs, "patience": config.run.patience, "lr": config.run.lr,
                       "trainable_blocks": config.run.trainable_blocks, "memory_fraction": config.run.memory_fraction,
                       "subjects": config.run.basic.data.subjects, "size": config.run.basic.data.size}}


def _mean_std(values: Sequence[float | None]) -> dict[str, float | None]:
    present = [value for value in values if value is not None]
    return {"mean": float(np.mean(present)), "std": float(np.std(present))} if present else {"mean": None, "std": None}


def _markdown(config: CompareConfig, summary: Mapping[str, Any]) -> str:
    budget = summary["budget"]
    lines = [
        f"# Comparison: {len(summary['seeds'])} data seeds ({', '.join(map(str, summary['seeds']))}) x "
        f"{summary['orders']} orders",
        "",
        f"Budget of every trained strategy: at most {budget['epochs']} epochs per step (patience {budget['patience']} "
        f"on validation subjects), lr {budget['lr']:g}, last {budget['trainable_blocks']} block group(s) trained, "
        f"memory {budget['memory_fraction']:.0%} of the training stream; {budget['subjects']} subjects at "
        f"{budget['size']} px. Accuracies in % on held-out test subjects (rows marked (reference protocol): "
        f"fold and early stopping chosen on those test subjects, so optimistic), mean ± std over the (seed, order) runs; "
        f"Δ: the row's Overall Accuracy minus `{summary['recommended']}`'s, on each data seed (mean over the orders "
        "both ran on it, ± their spread over those orders), and the mean over seeds; p: two-sided paired t-test of "
        "the per-seed differences across seeds (the orders of one seed share its basic model and test subjects, so "
        "they are not independent samples).",
        "",
        "| strategy | runs | Overall Acc. | macro-F1 | final acc. | final macro-F1 | final basic | final compound | "
        f"Δ Overall (row − {summary['recommended']}) | Δ per seed | p (seeds) | s / step |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ranked = sorted(summary["strategies"].items(), key=lambda item: -(item[1]["overall_accuracy"]["mean"] or 0))
    for name, row in ranked:
        versus = row.get("versus_recommended", {}).get("overall_accuracy")
        delta = f"{100 * versus['mean_difference']:+.1f}" if versus else "–"
        per_seed = ", ".join(f"{100 * entry['difference']:+.1f} ± {100 * entry['order_std']:.1f}"
                             for entry in versus["per_seed"]) if versus else "–"
        p_value = "–" if not versus or versus["p_value"] is None else f"{versus['p_value']:.3g}"
        cells = [_percent(row[metric]) for metric in _REPORTED]
        seconds = "–" if row["seconds_per_step"] is None else f"{row['seconds_per_step']:.1f}"
        lines.append(f"| `{name}` | {row['runs']} | " + " | ".join(cells) + f" | {delta} | {per_seed} | {p_value} | {seconds} |")
    lines += _caveats(name for name, _ in ranked)
    lines += ["", f"Wall time: {summary['wall_seconds'] / 60:.1f} min (finished runs are reused, not timed again)."]
    return "\n".join(lines) + "\n"


def _caveats(rows: Iterable[str]) -> list[str]:
    """A line per strategy of the table whose registry entry says how its scores differ."""
    names = dict.fromkeys(row.split(" (")[0] for row in rows)
    notes = [f"- `{name}`: {STRATEGIES[name].caveat}." for name in names if name in STRATEGIES and STRATEGIES[name].caveat]
    return ["", *notes] if notes else []


def _percent(value: Mapping[str, float | None]) -> str:
    return "–" if value["mean"] is None else f"{100 * value['mean']:.1f} ± {100 * value['std']:.1f}"
