"""Valence/arousal metrics and model cost against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cfer.distill.metrics import affect_metrics, ccc, model_cost


def test_ccc_matches_lins_formula_by_hand() -> None:
    prediction, target = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0])
    # means 2 and 3; population variances 2/3 and 2; covariance (−1·−1 + 0 + 1·2)/3 = 1
    assert ccc(prediction, target) == pytest.approx(2 * 1 / (2 / 3 + 2 + 1))
    assert ccc(target, target) == pytest.approx(1.0)


def test_affect_metrics_per_axis_and_nan_rows_left_out() -> None:
    prediction = np.array([[0.5, -0.2], [-0.5, 0.4], [0.1, 0.1], [9.0, 9.0]])
    target = np.array([[0.4, 0.2], [-0.3, 0.5], [-0.1, 0.3], [np.nan, 0.0]])
    metrics = affect_metrics(prediction, target)
    assert metrics["valence"]["rmse"] == pytest.approx(np.sqrt((0.01 + 0.04 + 0.04) / 3))
    assert metrics["valence"]["sagr"] == pytest.approx(2 / 3)  # the third row's sign differs
    assert metrics["arousal"]["sagr"] == pytest.approx(2 / 3)
    assert metrics["valence"]["pcc"] == pytest.approx(np.corrcoef([0.5, -0.5, 0.1], [0.4, -0.3, -0.1])[0, 1])


def test_model_cost_counts_macs_and_parameters() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, kernel_size=1, bias=False), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    cost = model_cost(model, size=8, repeats=3, batch=4)
    # conv: 8*8 positions x 4 outputs x 3 inputs; linear: 256 x 5
    assert cost["macs"] == 8 * 8 * 4 * 3 + 256 * 5
    assert cost["parameters"] == 12 + 256 * 5 + 5
    assert cost["latency_ms"] > 0 and cost["images_per_second"] > 0
    assert next(model.parameters()).device == torch.device("cpu") and model.training
