"""Numbers for attention maps: similarity of two maps, and how well a map points at known regions.

Every function takes maps of shape (..., H, W), compares them pixel by pixel, and returns one value
per map, shape (...); they are plain NumPy and know nothing about models or CAM methods.

Similarity (is the compound's map like its components' maps?):
    :func:`pearson_correlation` of the pixel values, and :func:`top_fraction_iou`, the
    intersection over union of the two maps' most salient ``fraction`` of pixels.

Localisation (does the map fall where the expression is?), against a ground-truth region mask:
    :func:`pointing_hit`, the pointing game (Zhang et al. 2018, "Top-down neural attention by
    excitation backprop", IJCV): a hit when the map's maximum lies inside the region; and
    :func:`energy_inside`, the share of the map's total mass inside the region. For a map that
    carries no information, both are expected to equal the region's share of the image
    (:func:`region_fraction`), which is the baseline to compare them with.

A map that is zero everywhere (a class with no positive evidence, after the CAM's ReLU) has no
salient pixels and no peak: its correlation, IoU and energy are NaN and its pointing game a miss.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "energy_inside",
    "pearson_correlation",
    "pointing_hit",
    "region_fraction",
    "top_fraction_iou",
    "top_fraction_mask",
]


def _flat(maps: np.ndarray) -> np.ndarray:
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim < 2:
        raise ValueError(f"maps must have shape (..., H, W), got {maps.shape}")
    return maps.reshape(*maps.shape[:-2], -1)


def pearson_correlation(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pearson correlation of two maps' pixel values.

    Args:
        first: (..., H, W) maps.
        second: (..., H, W) maps, broadcastable against ``first``.

    Returns:
        (...) correlations in [-1, 1]; NaN where either map is constant.
    """
    a, b = np.broadcast_arrays(_flat(first), _flat(second))
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    norm = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, (a * b).sum(-1) / np.where(norm > 0, norm, 1.0), np.nan)


def top_fraction_mask(maps: np.ndarray, fraction: float) -> np.ndarray:
    """The most salient pixels of each map.

    Args:
        maps: (..., H, W) maps.
        fraction: Share of the pixels to keep, in (0, 1].

    Returns:
        (..., H, W) bool: the ``ceil(fraction * H * W)`` largest pixels of each map, minus those
        that are not positive (a map that is zero over half the image has no salient half). Ties
        are broken by pixel order, so equal maps give equal masks.

    Raises:
        ValueError: If ``fraction`` is not in (0, 1].
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    flat = _flat(maps)
    keep = int(np.ceil(fraction * flat.shape[-1]))
    # A stable sort of the negated values ranks equal pixels in raster order.
    order = np.argsort(-flat, axis=-1, kind="stable")[..., :keep]
    mask = np.zeros(flat.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=-1)
    mask &= flat > 0
    return mask.reshape(np.shape(maps))


def top_fraction_iou(first: np.ndarray, second: np.ndarray, fraction: float = 0.2) -> np.ndarray:
    """Intersection over union of two maps' top-``fraction`` pixels (see :func:`top_fraction_mask`).

    Args:
        first: (..., H, W) maps.
        second: (..., H, W) maps, broadcastable against ``first``.
        fraction: Share of the pixels each mask keeps.

    Returns:
        (...) IoU in [0, 1]; NaN where both maps are zero everywhere.
    """
    a, b = np.broadcast_arrays(top_fraction_mask(first, fraction), top_fraction_mask(second, fraction))
    intersection = (a & b).sum((-2, -1))
    union = (a | b).sum((-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / np.maximum(union, 1), np.nan)


def pointing_hit(maps: np.ndarray, regions: np.ndarray, tolerance: float = 1e-6) -> np.ndarray:
    """The pointing game: does each map peak inside its region?

    Args:
        maps: (..., H, W) maps.
        regions: (..., H, W) masks, bool or coverage in [0, 1] (a pixel counts when >= 0.5).
        tolerance: How far below the map's maximum the best pixel inside the region may be and
            still count; pytorch-grad-cam maps peak at exactly 1, so ties are common.

    Returns:
        (...) bool: True where the map's largest value inside the region is its global maximum.
        A map that is zero everywhere, or an empty region, is a miss.
    """
    flat, inside = np.broadcast_arrays(_flat(maps), _flat(regions) >= 0.5)
    peak = flat.max(-1)
    best_inside = np.where(inside, flat, -np.inf).max(-1)
    return (best_inside >= peak - tolerance) & (peak > 0)


def energy_inside(maps: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Share of each map's mass inside its region ("energy-based pointing game", Wang et al. 2020).

    Args:
        maps: (..., H, W) non-negative maps.
        regions: (..., H, W) masks, bool or coverage in [0, 1]; coverage weights each pixel.

    Returns:
        (...) fractions in [0, 1]; NaN for a map that is zero everywhere.
    """
    flat, weight = np.broadcast_arrays(_flat(maps), _flat(regions))
    total = flat.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (flat * weight).sum(-1) / np.where(total > 0, total, 1.0), np.nan)


def region_fraction(regions: np.ndarray) -> np.ndarray:
    """Share of the image a region covers: the chance level of both localisation scores.

    Args:
        regions: (..., H, W) masks, bool or coverage in [0, 1].

    Returns:
        (...) fractions in [0, 1].
    """
    return _flat(regions).mean(-1)
