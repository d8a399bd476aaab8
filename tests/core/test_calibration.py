"""TEEN's training-free prototype calibration, against a hand computation on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from cfer.core.calibration import calibrate_prototypes


def test_calibration_by_hand() -> None:
    base = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # unit: (1, 0) and (0, 1)
    novel = torch.tensor([[3.0, 4.0]])  # unit: (0.6, 0.8)
    tau, alpha = 2.0, 0.25
    # similarities 0.6 and 0.8; softmax(2 · [0.6, 0.8])
    w0 = math.exp(1.2) / (math.exp(1.2) + math.exp(1.6))
    w1 = 1 - w0
    delta = torch.tensor([w0, w1]) / math.hypot(w0, w1)
    expected = (1 - alpha) * torch.tensor([0.6, 0.8]) + alpha * delta
    calibrated = calibrate_prototypes(novel, base, shift_weight=alpha, softmax_temperature=tau)
    assert torch.allclose(calibrated, expected.unsqueeze(0), atol=1e-6)


def test_calibration_limits_and_the_nearest_base_class_dominating() -> None:
    base = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    novel = torch.tensor([[0.9, 0.1, 0.3], [0.0, 2.0, 1.0]])
    unit = novel / novel.norm(dim=1, keepdim=True)
    assert torch.allclose(calibrate_prototypes(novel, base, shift_weight=0.0), unit)
    # α = 1 with a very sharp softmax: each new prototype becomes its most similar base prototype
    sharp = calibrate_prototypes(novel, base, shift_weight=1.0, softmax_temperature=1e4)
    assert torch.allclose(sharp, base, atol=1e-6)
    # a flat softmax mixes the base prototypes equally, whatever the new prototype
    flat = calibrate_prototypes(novel, base, shift_weight=1.0, softmax_temperature=0.0)
    assert torch.allclose(flat, torch.tensor([[1.0, 1.0, 0.0]] * 2) / math.sqrt(2))


def test_calibration_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="shift_weight"):
        calibrate_prototypes(torch.ones(1, 2), torch.ones(1, 2), shift_weight=1.5)
    with pytest.raises(ValueError, match="features"):
        calibrate_prototypes(torch.ones(1, 2), torch.ones(1, 3))
