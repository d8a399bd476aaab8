"""The continual phase: compound expressions added one class at a time to a basic-expression model.

:func:`run_incremental` is the whole protocol of Maiden & Nakisa (2023) (basic phase, then one
Avalanche class-incremental stream per order of the compound classes, for every requested strategy,
resumable); the modules below are its parts, and :func:`run_incremental_sweep` runs the same runs as
Ray tasks. The strategies themselves are in the ``strategies``
package, their algorithm cores in :mod:`cfer.core`.
"""

from cfer.continual.benchmark import (
    IncrementalBenchmark,
    build_benchmark,
    draw_compound_orders,
    make_transforms,
    subject_split,
    to_classification_dataset,
)
from cfer.continual.config import IncrementalConfig, default_basic_phase
from cfer.continual.evaluation import RunLoggers, make_evaluator, read_step_metrics
from cfer.continual.metrics import accuracy_matrix, average_forgetting, backward_transfer, overall_accuracy
from cfer.continual.reports import format_incremental_summary, plot_accuracy_curves, summarize_run, write_reports
from cfer.continual.runner import run_incremental, run_stream
from cfer.continual.sweep import run_incremental_sweep

__all__ = [
    "IncrementalBenchmark",
    "IncrementalConfig",
    "RunLoggers",
    "accuracy_matrix",
    "average_forgetting",
    "backward_transfer",
    "build_benchmark",
    "default_basic_phase",
    "draw_compound_orders",
    "format_incremental_summary",
    "make_evaluator",
    "make_transforms",
    "overall_accuracy",
    "plot_accuracy_curves",
    "read_step_metrics",
    "run_incremental",
    "run_incremental_sweep",
    "run_stream",
    "subject_split",
    "summarize_run",
    "to_classification_dataset",
    "write_reports",
]
