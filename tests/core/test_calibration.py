"""TEEN's training-free prototype calibration, against a hand computation on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from cfer.core.calibration import (
    calibrate_prototypes,
    calibrated_gaussian,
    component_weights,
    sample_gaussian,
    similarity_weights,
)


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


def test_component_weights_put_half_on_each_component() -> None:
    weights = component_weights(torch.tensor([[0, 2], [1, 0]]), 3)
    assert torch.equal(weights, torch.tensor([[0.5, 0.0, 0.5], [0.5, 0.5, 0.0]]))


def test_similarity_weights_by_hand() -> None:
    novel, base = torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 0.0], [0.0, 5.0], [-1.0, 0.0]])
    cosines = torch.tensor([math.sqrt(0.5), math.sqrt(0.5), -math.sqrt(0.5)])  # the norms do not count
    expected = torch.exp(4 * cosines) / torch.exp(4 * cosines).sum()
    assert torch.allclose(similarity_weights(novel, base, 4.0)[0], expected)


def test_calibrated_gaussian_mixes_the_mean_and_keeps_each_covariance_part() -> None:
    shots = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
    prior = torch.tensor([10.0, 10.0])
    rows = [torch.ones(4, 2), torch.zeros(5, 2), 2 * torch.ones(3, 2)]
    gaussian = calibrated_gaussian(shots, 0.25, prior, torch.tensor([0.5, 0.0, 0.5]), rows, covariance_weight=0.8)
    assert torch.allclose(gaussian.mean, 0.25 * torch.tensor([2.0, 1.0]) + 0.75 * prior)
    assert [weight for weight, _ in gaussian.parts] == pytest.approx([0.4, 0.4, 0.2])  # β·w for w > 0, then 1 − β
    assert gaussian.parts[0][1] is rows[0] and gaussian.parts[1][1] is rows[2] and gaussian.parts[2][1] is shots
    one = calibrated_gaussian(shots[:1], 0.5, prior, torch.tensor([1.0, 0.0, 0.0]), rows, covariance_weight=0.8)
    assert [weight for weight, _ in one.parts] == [1.0]  # one shot has no covariance: the base part takes it all
    none = calibrated_gaussian(shots[:0], 0.0, prior, torch.tensor([1.0, 0.0, 0.0]), rows)
    assert torch.equal(none.mean, prior)
    with pytest.raises(ValueError, match="shot_weight must be 0"):
        calibrated_gaussian(shots[:0], 0.5, prior, torch.tensor([1.0, 0.0, 0.0]), rows)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        calibrated_gaussian(shots, 1.5, prior, torch.tensor([1.0, 0.0, 0.0]), rows)


def test_samples_have_the_weighted_sum_of_the_parts_covariances() -> None:
    generator = torch.Generator().manual_seed(0)
    first, second = torch.randn(6, 3, generator=generator), torch.randn(4, 3, generator=generator) * 2
    gaussian = calibrated_gaussian(second, 0.0, torch.tensor([1.0, -2.0, 0.5]), torch.tensor([1.0]), [first],
                                   covariance_weight=0.3)
    samples = sample_gaussian(gaussian, 200_000, torch.Generator().manual_seed(1)).double()
    expected = 0.3 * torch.cov(first.T.double()) + 0.7 * torch.cov(second.T.double())
    assert torch.allclose(samples.mean(0), torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), atol=0.02)
    assert torch.allclose(torch.cov(samples.T), expected, atol=0.03)
    again = sample_gaussian(gaussian, 5, torch.Generator().manual_seed(1))
    assert torch.equal(again, sample_gaussian(gaussian, 5, torch.Generator().manual_seed(1)))
