"""Basic-compound maps: is a compound expression explained by the features of its basic components?

Maiden & Nakisa (2023) show Grad-CAM maps of a compound expression beside those of its two basic
components and argue that the compound is recognised from the same facial features. This module
puts a number on the claim: on images of a compound, the compound class's map is compared with
the maps of its two components (from :mod:`cfer.taxonomy`) and with the maps of the basic classes
that are *not* its components; if the claim holds, the first similarity is the larger.
A model must output both the compound and the basic classes for this, e.g. a model of the continual
phase or a linear probe over all categories (:func:`cfer.cam.fit_linear_probe`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from torch import Tensor

from cfer.cam.explainer import CamExplainer
from cfer.cam.scores import pearson_correlation, top_fraction_iou
from cfer.taxonomy import BASIC, get_category

__all__ = ["SIMILARITY_KEYS", "basic_compound_maps", "compound_similarity", "summarize_similarity"]

SIMILARITY_KEYS: tuple[str, ...] = ("pearson_components", "pearson_others", "iou_components", "iou_others")
"""The per-image series :func:`compound_similarity` returns."""


def basic_compound_maps(
    explainer: CamExplainer,
    images: Tensor,
    compound: str,
    basic_classes: Sequence[str] = BASIC,
    require_compound: bool = True,
) -> dict[str, np.ndarray]:
    """Maps of a compound class, its components and the other basic classes, on the same images.

    Args:
        explainer: The model's explainer, with class names.
        images: (N, 3, H, W) images, normally of ``compound``.
        compound: A compound category name.
        basic_classes: The basic classes to explain besides the compound.
        require_compound: If False and the model has no output for ``compound``, return the basic
            classes' maps only (a basic-phase model); if True, that is an error.

    Returns:
        Class name -> (N, H, W) maps: the compound first (when present), then its components, then
        the other basic classes.

    Raises:
        KeyError: If the model lacks a requested class; the message lists the model's classes.
        ValueError: If ``compound`` is not a compound category.
    """
    category = get_category(compound)
    if category.kind != "compound":
        raise ValueError(f"{compound!r} is a {category.kind} category, not a compound one")
    has_compound = explainer.class_names is not None and category.name in explainer.class_names
    head = [category.name] if require_compound or has_compound else []
    classes = head + list(category.components) + [name for name in basic_classes if name not in category.components]
    maps = explainer.class_maps(images, classes)
    return {name: maps[:, index] for index, name in enumerate(classes)}


def compound_similarity(
    maps: Mapping[str, np.ndarray],
    compound: str,
    basic_classes: Sequence[str] = BASIC,
    top_fraction: float = 0.2,
) -> dict[str, np.ndarray]:
    """How much a compound's map resembles its components' maps, against the other basic classes'.

    Args:
        maps: Class name -> (N, H, W) maps on the same N images; must hold ``compound`` and every
            class of ``basic_classes`` (see :func:`basic_compound_maps`).
        compound: The compound category.
        basic_classes: The basic classes; those that are not components of ``compound`` are the
            comparison group.
        top_fraction: Share of the most salient pixels compared by the IoU.

    Returns:
        Per image, shape (N,) each: ``pearson_components`` and ``iou_components``, the mean over the
        two components of the correlation and top-``top_fraction`` IoU with the compound's map;
        ``pearson_others`` and ``iou_others``, the same over the non-component basic classes. NaN
        where a map is zero everywhere (see :mod:`cfer.cam.scores`).

    Raises:
        KeyError: If a needed map is missing.
    """
    components = get_category(compound).components
    others = [name for name in basic_classes if name not in components]
    missing = [name for name in (compound, *components, *others) if name not in maps]
    if missing:
        raise KeyError(f"maps are missing for {missing}; given maps of {sorted(maps)}")
    target = maps[compound]

    def mean_over(names: Sequence[str], score) -> np.ndarray:
        values = np.stack([score(target, maps[name]) for name in names])
        # An image whose maps are all NaN gets NaN, as meant; NumPy would warn about it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            return np.nanmean(values, axis=0)

    def iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
        return top_fraction_iou(first, second, top_fraction)

    return {
        "pearson_components": mean_over(components, pearson_correlation),
        "pearson_others": mean_over(others, pearson_correlation),
        "iou_components": mean_over(components, iou),
        "iou_others": mean_over(others, iou),
    }


def summarize_similarity(per_compound: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
    """Aggregates :func:`compound_similarity` over compounds into a JSON-ready dict.

    The test is paired per image: for each image, is the compound's map more similar to its
    components' maps than to the other basic classes' maps? ``wilcoxon_p`` is the one-sided
    Wilcoxon signed-rank p-value of the per-image differences (components minus others).

    Args:
        per_compound: Compound name -> the dict :func:`compound_similarity` returned.

    Returns:
        ``{"per_compound": {name: {key: mean, ..., "images": n}}, "overall": {key: mean, ...,
        "<metric>_components_higher": share of images, "<metric>_wilcoxon_p": p, "images": n}}``.
    """
    from scipy.stats import wilcoxon

    summary: dict = {"per_compound": {}, "overall": {}}
    pooled = {key: [] for key in SIMILARITY_KEYS}
    for name, series in per_compound.items():
        summary["per_compound"][name] = {key: _mean(series[key]) for key in SIMILARITY_KEYS}
        summary["per_compound"][name]["images"] = len(series[SIMILARITY_KEYS[0]])
        for key in SIMILARITY_KEYS:
            pooled[key].append(np.asarray(series[key], dtype=float))
    joined = {key: np.concatenate(values) if values else np.zeros(0) for key, values in pooled.items()}
    overall = {key: _mean(values) for key, values in joined.items()}
    for metric in ("pearson", "iou"):
        difference = joined[f"{metric}_components"] - joined[f"{metric}_others"]
        difference = difference[np.isfinite(difference)]
        overall[f"{metric}_components_higher"] = float(np.mean(difference > 0)) if len(difference) else None
        nonzero = difference[difference != 0]
        overall[f"{metric}_wilcoxon_p"] = (
            float(wilcoxon(nonzero, alternative="greater").pvalue) if len(nonzero) >= 2 else None
        )
    overall["images"] = len(joined[SIMILARITY_KEYS[0]])
    summary["overall"] = overall
    return summary


def _mean(values: np.ndarray) -> float | None:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None
