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

__all__ = ["AXES", "affect_metrics", "ccc", "classification_metrics", "plot_confusion_matrix", "plot_curves"]


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


AXES = ("valence", "arousal")
"""The regression outputs' names, in output order."""


def ccc(prediction: np.ndarray, target: np.ndarray) -> float:
    """Lin's concordance correlation coefficient of two vectors (population moments)."""
    prediction, target = np.asarray(prediction, np.float64), np.asarray(target, np.float64)
    covariance = ((prediction - prediction.mean()) * (target - target.mean())).mean()
    denominator = prediction.var() + target.var() + (prediction.mean() - target.mean()) ** 2
    return float(2 * covariance / denominator) if denominator > 0 else 0.0


def affect_metrics(prediction: np.ndarray, target: np.ndarray) -> dict[str, dict[str, float]]:
    """RMSE, PCC, CCC and SAGR of each axis, the AffectNet / EmoNet conventions.

    Mollahosseini et al. 2017; Toisoul et al. 2021: RMSE, Pearson's correlation (PCC), Lin's
    concordance correlation coefficient ``CCC = 2 cov(x, y) / (var x + var y + (mean x - mean y)^2)``
    and the sign agreement rate (SAGR, the share of samples whose prediction has the sign of the label).

    Args:
        prediction: (N, 2) predicted (valence, arousal).
        target: (N, 2) labels; rows with a NaN are left out.

    Returns:
        ``{"valence": {"rmse", "pcc", "ccc", "sagr"}, "arousal": {...}}``.
    """
    prediction, target = np.asarray(prediction, np.float64), np.asarray(target, np.float64)
    keep = ~np.isnan(target).any(axis=1)
    prediction, target = prediction[keep], target[keep]
    results = {}
    for axis, name in enumerate(AXES):
        p, t = prediction[:, axis], target[:, axis]
        pcc = float(np.corrcoef(p, t)[0, 1]) if p.std() > 0 and t.std() > 0 else 0.0
        results[name] = {"rmse": float(np.sqrt(((p - t) ** 2).mean())), "pcc": pcc, "ccc": ccc(p, t),
                         "sagr": float((np.sign(p) == np.sign(t)).mean())}
    return results
