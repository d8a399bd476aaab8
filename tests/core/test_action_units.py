"""The action-unit head's loss and its F1, against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cfer.core.action_units import ActionUnitHead, au_detection_scores, au_presence_loss


def test_presence_loss_is_the_bce_of_the_labelled_entries_only() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.0, 3.0]])
    intensities = torch.tensor([[0.4, 0.0], [float("nan"), 1.0]])  # present, absent / unlabelled, present

    def bce(z: float, y: float) -> float:
        p = 1 / (1 + math.exp(-z))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    expected = (bce(2.0, 1) + bce(-1.0, 0) + bce(3.0, 1)) / 3
    assert au_presence_loss(logits, intensities).item() == pytest.approx(expected, rel=1e-6)
    unlabelled = au_presence_loss(logits.requires_grad_(), torch.full((2, 2), float("nan")))
    assert unlabelled.item() == 0.0 and unlabelled.requires_grad


def test_detection_scores_count_hits_by_hand() -> None:
    probabilities = np.array([[0.9, 0.1, 0.2], [0.6, 0.7, 0.1], [0.2, 0.4, 0.3], [0.8, 0.6, 0.0]])
    intensities = np.array([[1.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.3, np.nan, 0.0], [0.0, 0.9, 0.0]])
    scores = au_detection_scores(probabilities, intensities, [1, 4, 9])
    # AU1: truth 1,1,1,0; said 1,1,0,1 -> tp 2, positives 3, said 3 -> 4/6
    assert scores["f1"]["AU1"] == pytest.approx(4 / 6)
    # AU4 (third row unlabelled): truth 0,0,1; said 0,1,1 -> tp 1, positives 1, said 2 -> 2/3
    assert scores["f1"]["AU4"] == pytest.approx(2 / 3)
    assert scores["f1"]["AU9"] is None and scores["always_present_f1"]["AU9"] is None  # never shown
    assert scores["always_present_f1"]["AU1"] == pytest.approx(2 * 3 / (3 + 4))
    assert scores["always_present_f1"]["AU4"] == pytest.approx(2 * 1 / (1 + 3))
    assert scores["mean_f1"] == pytest.approx((4 / 6 + 2 / 3) / 2)


def test_head_has_one_logit_per_au() -> None:
    head = ActionUnitHead(5, [1, 2, 12])
    assert head(torch.zeros(3, 5)).shape == (3, 3) and head.au_ids == (1, 2, 12)
