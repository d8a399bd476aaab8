"""Continual-learning summaries computed from per-step accuracies.

Notation: ``matrix[i][j]`` is the test accuracy on the classes of experience ``j`` after training
experience ``i`` (defined for ``j <= i``; ``nan`` or ``None`` above the diagonal), and the *step
accuracy* of step ``i`` is the accuracy over every test image of the classes seen up to ``i``.

* Overall accuracy (Maiden & Nakisa 2023, reference ``get_overall_cont_results`` in
  github.com/AngusMaiden/complex-FER ``src/models/evaluate.py``): step accuracies, the basic step
  included, averaged over orders step by step, then over steps.
* Average forgetting (Chaudhry et al. 2018, "Riemannian Walk"): for every experience before the
  last, the best accuracy it ever had before the final step minus its final accuracy, averaged.
* Macro-F1 (the convention of the ABAW compound-expression challenge): the unweighted mean over the
  seen classes of each class's F1, from a step's confusion matrix (scikit-learn's ``f1_score``).
* Backward transfer (Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory"): the mean over
  experiences before the last of final accuracy minus the accuracy right after learning it; it is
  also minus Avalanche's ``StreamForgetting`` (which measures from the accuracy right after learning).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score

__all__ = ["accuracy_matrix", "average_forgetting", "backward_transfer", "macro_f1", "overall_accuracy"]


def accuracy_matrix(rows: Sequence[Sequence[float | None]]) -> np.ndarray:
    """A square float matrix from ragged rows; missing entries (``None``, absent) become ``nan``.

    Args:
        rows: Row ``i`` holds the accuracies on experiences ``0..i`` after step ``i``.

    Returns:
        Array of shape ``(steps, steps)``.
    """
    size = len(rows)
    matrix = np.full((size, size), np.nan)
    for i, row in enumerate(rows):
        for j, value in enumerate(row[:size]):
            if value is not None:
                matrix[i, j] = value
    return matrix


def overall_accuracy(step_accuracies: Sequence[Sequence[float]] | np.ndarray) -> float:
    """The paper's Overall Accuracy over orders.

    Args:
        step_accuracies: Shape ``(orders, steps)``: step accuracy of each order's every step, the
            basic step first.

    Returns:
        Mean over steps of the mean over orders.

    Raises:
        ValueError: If the array is empty or orders have different lengths.
    """
    values = np.asarray(step_accuracies, dtype=float)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"expected a non-empty (orders, steps) array, got shape {values.shape}")
    return float(values.mean(axis=0).mean())


def average_forgetting(matrix: np.ndarray | Sequence[Sequence[float | None]]) -> float:
    """Mean over experiences ``j < T`` of ``max_{j <= i < T} a[i, j] - a[T, j]`` (``T``: last step).

    Args:
        matrix: Accuracy matrix (see the module docstring); square, or ragged rows.

    Returns:
        The average forgetting; 0.0 for a single step.
    """
    values = matrix if isinstance(matrix, np.ndarray) else accuracy_matrix(matrix)
    last = values.shape[0] - 1
    if last < 1:
        return 0.0
    drops = [np.nanmax(values[j:last, j]) - values[last, j] for j in range(last)]
    return float(np.mean(drops))


def backward_transfer(matrix: np.ndarray | Sequence[Sequence[float | None]]) -> float:
    """Mean over experiences ``j < T`` of ``a[T, j] - a[j, j]`` (negative when forgetting).

    Args:
        matrix: Accuracy matrix (see the module docstring); square, or ragged rows.

    Returns:
        The backward transfer; 0.0 for a single step.
    """
    values = matrix if isinstance(matrix, np.ndarray) else accuracy_matrix(matrix)
    last = values.shape[0] - 1
    if last < 1:
        return 0.0
    return float(np.mean([values[last, j] - values[j, j] for j in range(last)]))


def macro_f1(matrix: np.ndarray | Sequence[Sequence[int]], num_classes: int | None = None) -> float:
    """Macro-F1 over the first ``num_classes`` classes of a confusion matrix.

    Args:
        matrix: Counts, ``matrix[i][j]`` = images of class ``i`` predicted as ``j``.
        num_classes: Classes seen (rows and columns kept); all of them if None.

    Returns:
        The mean of the per-class F1 scores (a class never predicted nor present scores 0).
    """
    counts = np.asarray(matrix, dtype=np.int64)
    k = counts.shape[0] if num_classes is None else num_classes
    rows, columns = np.nonzero(counts[:k])
    repeats = counts[:k][rows, columns]
    truth, predicted = np.repeat(rows, repeats), np.repeat(columns, repeats)
    return float(f1_score(truth, predicted, labels=list(range(k)), average="macro", zero_division=0))
