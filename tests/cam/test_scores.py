"""The map scores on hand-made maps whose right answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from cfer.cam import (
    energy_inside,
    pearson_correlation,
    pointing_hit,
    region_fraction,
    top_fraction_iou,
    top_fraction_mask,
)


def blob(centre_row: float, centre_col: float, size: int = 16, width: float = 2.0) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size]
    return np.exp(-((rows - centre_row) ** 2 + (cols - centre_col) ** 2) / (2 * width**2))


def box(top: int, left: int, bottom: int, right: int, size: int = 16) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def test_identical_maps_correlate_fully_and_overlap_fully():
    first = blob(4, 4)
    assert pearson_correlation(first, first) == pytest.approx(1.0)
    assert top_fraction_iou(first, first, 0.1) == pytest.approx(1.0)


def test_correlation_ignores_scale_and_offset_and_sees_inversion():
    first = blob(4, 4)
    assert pearson_correlation(first, 3 * first + 1) == pytest.approx(1.0)
    assert pearson_correlation(first, 1 - first) == pytest.approx(-1.0)


def test_disjoint_blobs_do_not_overlap():
    assert top_fraction_iou(blob(3, 3), blob(12, 12), 0.05) == 0.0
    assert pearson_correlation(blob(3, 3), blob(12, 12)) < 0.1


def test_half_overlapping_masks_give_a_third():
    # Two 4x8 boxes sharing a 4x4 square: intersection 16, union 48.
    first, second = box(0, 0, 4, 8).astype(float), box(0, 4, 4, 12).astype(float)
    assert top_fraction_iou(first, second, 32 / 256) == pytest.approx(1 / 3)


def test_top_fraction_mask_keeps_the_largest_pixels_and_never_zeros():
    values = np.arange(16, dtype=float).reshape(4, 4)
    mask = top_fraction_mask(values, 0.25)
    assert mask.sum() == 4 and mask[3].all()
    sparse = np.zeros((4, 4))
    sparse[0, 0] = 1.0
    assert top_fraction_mask(sparse, 0.5).sum() == 1  # the zero half is not "salient"
    with pytest.raises(ValueError, match="fraction"):
        top_fraction_mask(values, 0.0)


def test_zero_and_constant_maps_give_nan_not_a_number_that_looks_real():
    zero = np.zeros((8, 8))
    assert np.isnan(pearson_correlation(zero, blob(2, 2, 8)))
    assert np.isnan(top_fraction_iou(zero, zero))
    assert np.isnan(energy_inside(zero, box(0, 0, 4, 4, 8)))
    assert not pointing_hit(zero, np.ones((8, 8), dtype=bool))


def test_pointing_game_hits_a_peak_inside_and_misses_one_outside():
    region = box(0, 0, 8, 8)
    assert pointing_hit(blob(3, 3), region)
    assert not pointing_hit(blob(12, 12), region)
    # Coverage masks count from 0.5 up.
    assert not pointing_hit(blob(3, 3), region * 0.4)


def test_energy_inside_is_the_share_of_mass_in_the_region():
    cam = np.zeros((16, 16))
    cam[:8] = 1.0
    cam[8:] = 3.0
    assert energy_inside(cam, box(0, 0, 8, 16)) == pytest.approx(0.25)
    assert energy_inside(blob(3, 3, width=1.0), box(0, 0, 8, 8)) > 0.99
    assert region_fraction(box(0, 0, 8, 16)) == pytest.approx(0.5)


def test_a_uniform_map_scores_the_chance_level():
    region = box(2, 2, 10, 6)
    assert energy_inside(np.ones((16, 16)), region) == pytest.approx(region_fraction(region))


def test_scores_are_computed_per_map_over_leading_dimensions():
    maps = np.stack([blob(3, 3), blob(12, 12)])
    regions = np.stack([box(0, 0, 8, 8)] * 2)
    assert pointing_hit(maps, regions).tolist() == [True, False]
    assert pearson_correlation(maps, blob(3, 3)).shape == (2,)
    assert top_fraction_iou(maps[:, None], maps[None, :], 0.05).shape == (2, 2)
    with pytest.raises(ValueError, match="H, W"):
        pearson_correlation(np.zeros(4), np.zeros(4))
