"""C-RanPAC's calibration in a continual stream, against the moments it should draw."""

from __future__ import annotations

import pytest
import torch

from strategies.registry import compound_components
from strategies.statistics_heads import GaussianCalibration


def _base() -> tuple[torch.Tensor, torch.Tensor]:
    """Two base classes in 2-D: class 0 round about (4, 0), class 1 stretched along y about (0, 4)."""
    generator = torch.Generator().manual_seed(0)
    zero = torch.tensor([4.0, 0.0]) + 0.5 * torch.randn(400, 2, generator=generator)
    one = torch.tensor([0.0, 4.0]) + torch.randn(400, 2, generator=generator) * torch.tensor([0.2, 2.0])
    return torch.cat([zero, one]), torch.tensor([0] * 400 + [1] * 400)


def _cov(rows: torch.Tensor) -> torch.Tensor:
    centred = rows - rows.mean(0)
    return centred.T @ centred / (len(rows) - 1)


def test_samples_toward_the_components_have_the_calibrated_mean_and_covariance() -> None:
    features, labels = _base()
    calibration = GaussianCalibration(shift_weight=0.75, covariance_weight=0.5, samples=40_000, components={2: (0, 1)})
    calibration.fit(features, labels)
    new = torch.tensor([2.0, 2.0]) + 0.1 * torch.randn(50, 2, generator=torch.Generator().manual_seed(1))
    samples, targets = calibration(new, torch.full((50,), 2))
    assert samples.shape == (40_000, 2) and set(targets.tolist()) == {2}
    base_mean = (features[labels == 0].mean(0) + features[labels == 1].mean(0)) / 2
    mean = 0.75 * new.mean(0) + 0.25 * base_mean  # by hand: α·μ + (1 − α)·(μ_0 + μ_1)/2
    cov = 0.5 * (_cov(features[labels == 0]) + _cov(features[labels == 1])) / 2 + 0.5 * _cov(new)
    torch.testing.assert_close(samples.mean(0), mean, atol=0.03, rtol=0)
    torch.testing.assert_close(_cov(samples), cov, atol=0.06, rtol=0)


def test_similarity_weights_pull_toward_the_nearest_base_class_and_draws_repeat() -> None:
    features, labels = _base()
    calibration = GaussianCalibration(shift_weight=0.5, softmax_temperature=50.0, samples=20_000)
    calibration.fit(features, labels)
    new = torch.tensor([6.0, 0.5]) + 0.1 * torch.randn(30, 2, generator=torch.Generator().manual_seed(2))
    samples, _ = calibration(new, torch.full((30,), 2))
    # the shots point at class 0, so the prior is class 0's mean alone
    torch.testing.assert_close(samples.mean(0), 0.5 * new.mean(0) + 0.5 * features[labels == 0].mean(0),
                               atol=0.03, rtol=0)
    again, _ = calibration(new, torch.full((30,), 2))
    assert torch.equal(samples, again)  # seeded by the experience: a resumed run draws the same


def test_calibration_refuses_before_fitting_and_a_class_without_components() -> None:
    calibration = GaussianCalibration(components={2: (0, 1)})
    with pytest.raises(ValueError, match="fit it on the first experience"):
        calibration(torch.zeros(2, 2), torch.tensor([2, 2]))
    calibration.fit(*_base())
    with pytest.raises(ValueError, match="output 3 has no components"):
        calibration(torch.zeros(2, 2), torch.tensor([3, 3]))


def test_compound_components_are_the_outputs_of_each_compounds_two_basic_classes() -> None:
    names = ("happy", "surprised", "fearful", "awed", "happily_surprised")
    assert compound_components(names) == {3: (2, 1), 4: (0, 1)}
    with pytest.raises(ValueError, match="'sadly_angry' has components"):
        compound_components(("happy", "sadly_angry"))
