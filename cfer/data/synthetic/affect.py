"""Valence and arousal of each rendered face, from what was rendered rather than from its label.

A category has one point on the circumplex (:mod:`cfer.taxonomy`); a face shows it more or less
strongly. Each synthetic image's (valence, arousal) is therefore

* the category's point scaled by the expression's strength ``s``: the mean rendered intensity of the
  category's prototypical AUs over :data:`REFERENCE_INTENSITY` (clipped to [0, 1.25]; 0 for neutral),
  which folds in the subject's expressivity and the per-image jitter of the renderer;
* plus small AU-driven offsets, documented here: valence rises with the smile (AU 12) and falls with
  the lip-corner depressor (AU 15) and the brow lowerer (AU 4); arousal rises with the widened eyes
  (AU 5), the dropped jaw (AU 26) and the raised inner brows (AU 1);

clipped to [-1, 1]. So "regression" on these faces is not a class lookup: two faces of one class
differ by how strongly, and with which AUs, they were drawn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cfer.taxonomy import get_category

__all__ = ["AFFECT_OFFSETS", "REFERENCE_INTENSITY", "image_affect"]

REFERENCE_INTENSITY = 0.7
"""The mean prototypical-AU intensity of a full-strength expression; ``s = 1`` there."""

AFFECT_OFFSETS: dict[str, dict[int, float]] = {
    "valence": {12: 0.15, 15: -0.10, 4: -0.05},
    "arousal": {5: 0.10, 26: 0.10, 1: 0.05},
}
"""Weight of each AU's intensity in the offset of valence and of arousal."""


def image_affect(categories: Sequence[str], au_ids: Sequence[int], intensities: np.ndarray) -> np.ndarray:
    """Per-image (valence, arousal).

    Args:
        categories: Category name of each image, length N.
        au_ids: FACS number of each column of ``intensities``.
        intensities: Rendered AU intensities in [0, 1], shape (N, len(au_ids)).

    Returns:
        float32 (N, 2) in [-1, 1].
    """
    column = {au: index for index, au in enumerate(au_ids)}
    result = np.zeros((len(categories), 2), dtype=np.float32)
    for row, name in enumerate(categories):
        category = get_category(name)
        prototypical = [column[au] for au in category.aus if au in column]
        strength = 0.0 if category.kind == "neutral" or not prototypical else float(
            np.clip(intensities[row, prototypical].mean() / REFERENCE_INTENSITY, 0.0, 1.25))
        for axis, (base, key) in enumerate(((category.valence, "valence"), (category.arousal, "arousal"))):
            offset = sum(weight * intensities[row, column[au]] for au, weight in AFFECT_OFFSETS[key].items()
                         if au in column)
            result[row, axis] = np.clip(strength * base + offset, -1.0, 1.0)
    return result
