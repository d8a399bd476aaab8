"""Avalanche's evaluation plugin and loggers for one continual run, and reading its results.

Accuracy per experience and over the stream, loss, the stream confusion matrix, Avalanche's own
forgetting and BWT, and timing are Avalanche metrics, logged to a text file, CSV files, TensorBoard
(when it imports) and, with ``progress``, the terminal. The per-step numbers the reports use are read
back from the dict that ``strategy.eval`` returns (:func:`read_step_metrics`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import IO, Any

import numpy as np
from avalanche.evaluation.metrics import (
    accuracy_metrics,
    bwt_metrics,
    confusion_matrix_metrics,
    forgetting_metrics,
    loss_metrics,
    timing_metrics,
)
from avalanche.logging import BaseLogger, CSVLogger, InteractiveLogger, TensorboardLogger, TextLogger
from avalanche.training.plugins import EvaluationPlugin

__all__ = ["RunLoggers", "make_evaluator", "read_step_metrics"]


class RunLoggers:
    """The loggers of one session of a run; close them when the session ends.

    Each session (first start, then each resume) logs to its own ``session_<k>`` folder, because
    Avalanche's CSV logger truncates its files when it opens them.

    Args:
        log_dir: Folder of the run's logs.
        progress: Also log to the terminal with Avalanche's interactive logger.
    """

    def __init__(self, log_dir: str | Path, progress: bool = False) -> None:
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        session = sum(1 for path in log_dir.glob("session_*") if path.is_dir())
        self.folder = log_dir / f"session_{session}"
        self.folder.mkdir()
        self._text: IO[str] = open(self.folder / "log.txt", "a", encoding="utf-8")  # noqa: SIM115
        self.loggers: list[BaseLogger] = [TextLogger(self._text), CSVLogger(str(self.folder / "csv"))]
        if importlib.util.find_spec("tensorboard") is not None:
            self.loggers.append(TensorboardLogger(str(self.folder / "tensorboard")))
        if progress:
            self.loggers.append(InteractiveLogger())

    def close(self) -> None:
        """Flush and close every log file."""
        for logger in self.loggers:
            close = getattr(logger, "close", None)
            if close is not None:
                close()
        if not self._text.closed:
            self._text.close()


def make_evaluator(num_classes: int, loggers: RunLoggers) -> EvaluationPlugin:
    """The evaluation plugin of a run.

    Args:
        num_classes: Classes of the whole stream (size of the confusion matrices).
        loggers: Where the metrics go.

    Returns:
        The plugin; pass it as ``evaluator`` to :func:`strategies.create_strategy`.
    """
    return EvaluationPlugin(
        accuracy_metrics(epoch=True, experience=True, stream=True),
        loss_metrics(epoch=True, stream=True),
        confusion_matrix_metrics(num_classes=num_classes, stream=True, save_image=False),
        forgetting_metrics(experience=True, stream=True),
        bwt_metrics(experience=True, stream=True),
        timing_metrics(epoch=True, experience=True),
        loggers=loggers.loggers,
    )


def read_step_metrics(results: dict[str, Any], seen_experiences: int, stream: str = "test") -> dict[str, Any]:
    """Picks the numbers of one step out of ``strategy.eval``'s result dict.

    Args:
        results: What ``strategy.eval(test_stream[:seen_experiences])`` returned.
        seen_experiences: Experiences evaluated.
        stream: Name of the evaluated stream.

    Returns:
        ``accuracy`` (over every image of the seen classes), ``experience_accuracy`` (one per seen
        experience) and ``confusion_matrix`` (counts over the whole stream's classes).

    Raises:
        KeyError: If a metric is missing from ``results``.
    """
    prefix = f"/eval_phase/{stream}_stream"
    accuracy = _one(results, f"Top1_Acc_Stream{prefix}")
    experience_accuracy = [
        float(_one(results, f"Top1_Acc_Exp{prefix}/", suffix=f"Exp{index:03d}"))
        for index in range(seen_experiences)
    ]
    matrix = np.asarray(_one(results, f"ConfusionMatrix_Stream{prefix}"), dtype=np.int64)
    return {
        "accuracy": float(accuracy),
        "experience_accuracy": experience_accuracy,
        "confusion_matrix": matrix.tolist(),
    }


def _one(results: dict[str, Any], prefix: str, suffix: str = "") -> Any:
    # the task part of the key ("/Task000") depends on the benchmark generator
    for key, value in results.items():
        if key.startswith(prefix) and key.endswith(suffix):
            return value
    known = ", ".join(sorted(results))
    raise KeyError(f"metric {prefix + '...' + suffix!r} not in the evaluation results; have: {known}")
