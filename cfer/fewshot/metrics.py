"""Scores of few-shot class-incremental runs: per session, then over runs.

After every session the model is scored on held-out images of all the classes seen so far:

* ``accuracy``: over all those images (TEEN's and CEC's "Avg Acc", the continual runs' step accuracy);
* ``base_accuracy`` and ``novel_accuracy``: mean per-class recall over the base classes and over the
  new classes seen so far (TEEN's ``seenac`` / ``unseenac``, from the confusion matrix's diagonal);
* ``harmonic_mean`` of the two, ``2ab / (a + b)``, which is low whenever either side is, so a model
  cannot hide forgetting behind novel classes or the reverse (the FSCIL report of TEEN and FACT).

Over a run: the **performance drop** ``accuracy(first session) − accuracy(last)`` (CEC, FACT) and the
**average accuracy** over all sessions, the base one included (the paper's "Overall Accuracy" of the
continual runs). Over runs (shot seeds × orders): mean ± 95% interval (:func:`~cfer.fewshot.stats.mean_ci`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import numpy as np
from torch import Tensor

from cfer.fewshot.stats import mean_ci

__all__ = [
    "SESSION_METRICS",
    "RunSummary",
    "SessionScores",
    "harmonic_mean",
    "performance_drop",
    "session_scores",
    "summarize_runs",
]

SESSION_METRICS = ("accuracy", "base_accuracy", "novel_accuracy", "harmonic_mean")
"""The per-session figures, in report order."""


class SessionScores(TypedDict):
    """The scores after one session; the novel figures are None after the base session."""

    session: int  # 0 for the base session
    classes_seen: int  # outputs scored over
    accuracy: float  # over all held-out images of the classes seen
    base_accuracy: float  # mean recall of the base classes
    novel_accuracy: float | None  # mean recall of the new classes seen so far
    harmonic_mean: float | None  # of base_accuracy and novel_accuracy


class RunSummary(TypedDict):
    """Mean ± 95% CI (``{'mean', 'ci95', 'n'}``) over runs of each figure."""

    per_session: list[dict[str, dict[str, float]]]  # per session, per metric of SESSION_METRICS
    final_accuracy: dict[str, float]  # accuracy after the last session
    final_base_accuracy: dict[str, float]
    final_novel_accuracy: dict[str, float]
    final_harmonic_mean: dict[str, float]
    performance_drop: dict[str, float]  # first − last session accuracy
    average_accuracy: dict[str, float]  # mean over all sessions, the base one included


def harmonic_mean(first: float, second: float) -> float:
    """``2ab / (a + b)``; 0 when both are 0."""
    total = first + second
    return 0.0 if total == 0 else 2.0 * first * second / total


def performance_drop(accuracies: Sequence[float]) -> float:
    """Accuracy of the first session minus that of the last."""
    return float(accuracies[0] - accuracies[-1])


def session_scores(predictions: Tensor, targets: Tensor, num_base: int, num_seen: int, session: int) -> SessionScores:
    """Scores of one session's predictions on held-out images.

    Args:
        predictions: Predicted output indices, shape (N,).
        targets: True output indices in ``[0, num_seen)``, shape (N,): base classes first
            (``[0, num_base)``), then the new ones in the order they were learned.
        num_base: Base classes.
        num_seen: Classes seen so far.
        session: Session index, 0 for the base session.

    Returns:
        The scores; a class without images is left out of the mean recalls.

    Raises:
        ValueError: If a target is outside ``[0, num_seen)``.
    """
    predictions, targets = predictions.reshape(-1).cpu(), targets.reshape(-1).cpu()
    if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= num_seen):
        raise ValueError(f"targets must be outputs in [0, {num_seen})")
    recalls = [float((predictions[targets == c] == c).float().mean()) if bool((targets == c).any()) else None
               for c in range(num_seen)]
    base = _mean([r for r in recalls[:num_base] if r is not None])
    novel = _mean([r for r in recalls[num_base:] if r is not None])
    return SessionScores(
        session=session,
        classes_seen=num_seen,
        accuracy=float((predictions == targets).float().mean()) if len(targets) else float("nan"),
        base_accuracy=float("nan") if base is None else base,
        novel_accuracy=novel,
        harmonic_mean=None if novel is None or base is None else harmonic_mean(base, novel),
    )


def summarize_runs(runs: Sequence[Sequence[SessionScores]]) -> RunSummary:
    """Mean ± 95% CI over runs of every session's scores, the final ones, the drop and the average.

    Args:
        runs: Per run, its scores for sessions 0..S (every run has the same sessions).

    Returns:
        The summary; a figure undefined in a session (novel accuracy of the base session) is left out.

    Raises:
        ValueError: If ``runs`` is empty or the runs differ in their number of sessions.
    """
    if not runs or len({len(run) for run in runs}) != 1:
        raise ValueError("summarize_runs needs at least one run, all with the same sessions")

    def over_runs(values: Sequence[float | None]) -> dict[str, float] | None:
        kept = [v for v in values if v is not None]
        return mean_ci(kept)._asdict() if kept else None

    per_session = []
    for index in range(len(runs[0])):
        row = {metric: over_runs([run[index][metric] for run in runs]) for metric in SESSION_METRICS}  # type: ignore[literal-required]
        per_session.append({metric: value for metric, value in row.items() if value is not None})
    last = [run[-1] for run in runs]
    accuracies = [[scores["accuracy"] for scores in run] for run in runs]
    return RunSummary(
        per_session=per_session,
        final_accuracy=mean_ci([s["accuracy"] for s in last])._asdict(),
        final_base_accuracy=mean_ci([s["base_accuracy"] for s in last])._asdict(),
        final_novel_accuracy=mean_ci([_or_nan(s["novel_accuracy"]) for s in last])._asdict(),
        final_harmonic_mean=mean_ci([_or_nan(s["harmonic_mean"]) for s in last])._asdict(),
        performance_drop=mean_ci([performance_drop(a) for a in accuracies])._asdict(),
        average_accuracy=mean_ci([float(np.mean(a)) for a in accuracies])._asdict(),
    )


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value

