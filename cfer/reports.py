"""Metrics and figures of a classification run: scikit-learn's metrics, matplotlib's plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)

from cfer.io import save_figure

__all__ = ["classification_metrics", "plot_confusion_matrix", "plot_curves"]


def classification_metrics(targets: Sequence[int], predictions: Sequence[int], classes: Sequence[str]) -> dict:
    """Accuracy, balanced accuracy, per-class precision/recall/F1/support and the confusion matrix.

    Args:
        targets: (N,) true class indices.
        predictions: (N,) predicted class indices.
        classes: Name of each class index.

    Returns:
        A JSON-ready dict; ``confusion_matrix[i][j]`` counts class ``i`` predicted as ``j``.
    """
    labels = list(range(len(classes)))
    targets, predictions = np.asarray(targets), np.asarray(predictions)
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, predictions, labels=labels, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(targets, predictions)) if len(targets) else 0.0,
        "balanced_accuracy": float(balanced_accuracy_score(targets, predictions)) if len(targets) else 0.0,
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(classes, precision, recall, f1, support)
        },
        "confusion_matrix": confusion_matrix(targets, predictions, labels=labels).tolist(),
        "classes": list(classes),
    }


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path,
                          title: str = "") -> Path:
    """Saves a row-normalised confusion matrix as PNG (scikit-learn's ConfusionMatrixDisplay).

    Cells carry their rate as text up to 12 classes; beyond, the colour alone (hundreds of text
    labels cost most of a second per figure, and a run of 10 orders draws 160 of them).
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    counts = np.asarray(matrix, dtype=float)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    size = 2.0 + 0.45 * len(classes)
    figure, axis = plt.subplots(figsize=(size, size))
    display = ConfusionMatrixDisplay(rates, display_labels=[c.replace("_", " ") for c in classes])
    numbers = len(classes) <= 12
    display.plot(ax=axis, cmap="Blues", colorbar=not numbers, include_values=numbers, values_format=".2f",
                 xticks_rotation=60)
    axis.set_title(title or "confusion matrix (rows: true class, normalised)")
    return save_figure(figure, path)


def plot_curves(history: Mapping[str, Sequence[float]], path: str | Path, title: str = "") -> Path:
    """Saves training curves: one panel for losses, one for accuracies, over epochs.

    Args:
        history: Series by name, e.g. ``train_loss``, ``val_loss``, ``train_accuracy``, ``val_accuracy``.
        path: Destination PNG.
        title: Figure title.
    """
    plt = _pyplot()
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, values in history.items():
        axis = loss_axis if "loss" in name else accuracy_axis
        axis.plot(range(1, len(values) + 1), values, label=name.replace("_", " "))
    for axis, label in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=8)
    figure.suptitle(title)
    return save_figure(figure, path)
