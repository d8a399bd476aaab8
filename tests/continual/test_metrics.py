"""Overall accuracy, forgetting and backward transfer against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cfer.continual.metrics import accuracy_matrix, average_forgetting, backward_transfer, overall_accuracy


def test_overall_accuracy_averages_orders_then_steps() -> None:
    # two orders, three steps (basic step first)
    steps = [[0.9, 0.6, 0.5], [0.7, 0.8, 0.3]]
    per_step_mean = [(0.9 + 0.7) / 2, (0.6 + 0.8) / 2, (0.5 + 0.3) / 2]
    assert overall_accuracy(steps) == pytest.approx(sum(per_step_mean) / 3)
    assert overall_accuracy([[0.5, 1.0]]) == pytest.approx(0.75)


def test_overall_accuracy_rejects_ragged_or_empty_input() -> None:
    with pytest.raises(ValueError):
        overall_accuracy(np.zeros((0, 3)))
    with pytest.raises(ValueError):
        overall_accuracy([0.5, 0.6])


def test_forgetting_and_bwt_on_a_hand_made_matrix() -> None:
    rows = [
        [0.9],
        [0.8, 0.7],
        [0.85, 0.5, 0.6],
        [0.6, 0.4, 0.5, 0.9],
    ]
    # forgetting: best before the last step minus final, for experiences 0, 1, 2
    expected_forgetting = ((0.9 - 0.6) + (0.7 - 0.4) + (0.6 - 0.5)) / 3
    # BWT: final minus right after learning
    expected_bwt = ((0.6 - 0.9) + (0.4 - 0.7) + (0.5 - 0.6)) / 3
    assert average_forgetting(rows) == pytest.approx(expected_forgetting)
    assert backward_transfer(rows) == pytest.approx(expected_bwt)
    matrix = accuracy_matrix(rows)
    assert matrix.shape == (4, 4) and math.isnan(matrix[0, 1])
    assert average_forgetting(matrix) == pytest.approx(expected_forgetting)


def test_forgetting_uses_the_best_earlier_accuracy_not_the_first() -> None:
    rows = [[0.5], [0.9, 0.8], [0.4, 0.8, 0.7]]
    assert average_forgetting(rows) == pytest.approx(((0.9 - 0.4) + (0.8 - 0.8)) / 2)
    assert backward_transfer(rows) == pytest.approx(((0.4 - 0.5) + (0.8 - 0.8)) / 2)


def test_single_step_has_no_forgetting() -> None:
    assert average_forgetting([[0.7]]) == 0.0
    assert backward_transfer([[0.7]]) == 0.0
