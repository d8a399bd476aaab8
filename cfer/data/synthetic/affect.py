"""Valence and arousal of each rendered face, from what was rendered rather than from its label.

A category has one point on the circumplex (:mod:`cfer.taxonomy`); a face shows it more or less
strongly. Each synthetic image's (valence, arousal) is therefore

* the category's point scaled by the expression's strength ``s``: the mean rendered intensity of the
  category's prototypical AUs over :data:`REFERENCE_INTENSITY` (clipped to [0, 1.25]; 0 for neutral),
  which folds in the subject's expressivity and the per-image jitter of the renderer;
* plus AU-driven offsets (:data:`AFFECT_OFFSETS`): valence rises with the smile (AU 12) and the cheek
  raise (AU 6) and falls with the lip-corner depressor (AU 15), the brow lowerer (AU 4), the nose
  wrinkle (AU 9), the upper-lip raise (AU 10) and the lip stretch (AU 20); arousal rises with the
  widened eyes (AU 5), the parted lips and dropped jaw (AU 25, 26, 27) and the raised brows (AU 1, 2);
* plus the subject's resting face (:data:`RESTING_WEIGHTS`), which the renderer draws on every image:
  upturned mouth corners read as more pleasant, raised brows as more alert. This is what gives
  neutral faces, which express almost no AU, their spread;

squashed softly into (-1, 1) by :func:`soft_bound`, which is nearly the identity below 0.6 and never
reaches 1, so that no face sits on the bound: the strongest happy faces stay apart from the weaker
ones. So "regression" on these faces is not a class lookup: two faces of one class differ by how
strongly, and with which AUs, they were drawn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cfer.taxonomy import get_category

__all__ = ["AFFECT_OFFSETS", "REFERENCE_INTENSITY", "RESTING_WEIGHTS", "image_affect", "soft_bound"]

REFERENCE_INTENSITY = 0.7
"""The mean prototypical-AU intensity of a full-strength expression; ``s = 1`` there."""

AFFECT_OFFSETS: dict[str, dict[int, float]] = {
    "valence": {12: 0.20, 6: 0.10, 15: -0.15, 4: -0.10, 9: -0.10, 10: -0.05, 20: -0.05},
    "arousal": {5: 0.15, 25: 0.05, 26: 0.10, 27: 0.10, 1: 0.05, 2: 0.05},
}
"""Weight of each AU's intensity in the offset of valence and of arousal."""

RESTING_WEIGHTS = (-6.0, -3.0)
"""(valence per unit of resting mouth downturn, arousal per unit of resting brow drop), in face units
(the image's y axis points down);
the subjects' resting offsets lie in [-0.025, 0.025] (:mod:`cfer.data.synthetic.subjects`)."""


def soft_bound(x: np.ndarray, power: float = 4.0) -> np.ndarray:
    """Squashes values into (-1, 1) without a plateau: ``x / (1 + |x|^p)^(1/p)``.

    Odd, strictly increasing, about the identity for ``|x| < 0.6`` (0.5 -> 0.496), and 1 -> 0.84,
    1.5 -> 0.98: never exactly 1, so distinct inputs stay distinct.
    """
    x = np.asarray(x, dtype=np.float64)
    return x / (1.0 + np.abs(x) ** power) ** (1.0 / power)


def image_affect(categories: Sequence[str], au_ids: Sequence[int], intensities: np.ndarray,
                 resting: np.ndarray | None = None) -> np.ndarray:
    """Per-image (valence, arousal).

    Args:
        categories: Category name of each image, length N.
        au_ids: FACS number of each column of ``intensities``.
        intensities: Rendered AU intensities in [0, 1], shape (N, len(au_ids)).
        resting: (N, 2) resting mouth downturn and brow drop of each image's subject, in face units;
            None: no resting face.

    Returns:
        float32 (N, 2) in (-1, 1).
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
            result[row, axis] = strength * base + offset
    if resting is not None:
        result += np.asarray(resting, dtype=np.float32) * np.float32(RESTING_WEIGHTS)
    return soft_bound(result).astype(np.float32)
