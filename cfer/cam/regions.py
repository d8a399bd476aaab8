"""Ground truth for localisation: where on a synthetic face its active action units move it.

The synthetic renderer knows, for each image, the intensity of every AU it drew and the pixels of
each facial region (:data:`cfer.data.synthetic.REGIONS`); :data:`cfer.data.synthetic.AU_REGION`
says which regions each AU moves. The union of the regions of the active AUs is where an
expression classifier ought to look, which :func:`cfer.cam.pointing_hit` and
:func:`cfer.cam.energy_inside` check a map against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from cfer.data.synthetic.renderer import AU_REGION, REGIONS

__all__ = ["active_au_mask", "active_regions"]


def active_regions(
    au_intensities: np.ndarray,
    au_ids: Sequence[int],
    threshold: float = 0.3,
    au_region: Mapping[int, Sequence[str]] = AU_REGION,
) -> list[tuple[str, ...]]:
    """The facial regions moved by each image's active AUs.

    Args:
        au_intensities: (N, len(au_ids)) intensities in [0, 1].
        au_ids: FACS number of each column.
        threshold: An AU is active above this intensity. The renderer draws prototypical AUs at
            0.35 or more and spurious ones below 0.25, so 0.3 keeps the former and drops the latter.
        au_region: Regions each AU moves.

    Returns:
        For each image, the sorted names of the regions of its active AUs (``()`` for none).

    Raises:
        KeyError: If an active AU has no entry in ``au_region``.
    """
    intensities = np.asarray(au_intensities)
    result = []
    for row in intensities:
        active = [int(au) for au, value in zip(au_ids, row, strict=True) if value > threshold]
        names = {region for au in active for region in au_region[au]}
        result.append(tuple(sorted(names)))
    return result


def active_au_mask(
    au_intensities: np.ndarray,
    au_ids: Sequence[int],
    region_masks: np.ndarray,
    threshold: float = 0.3,
    regions: Sequence[str] = REGIONS,
    au_region: Mapping[int, Sequence[str]] = AU_REGION,
) -> np.ndarray:
    """Pixels inside the union of the regions of each image's active AUs.

    Args:
        au_intensities: (N, len(au_ids)) intensities in [0, 1].
        au_ids: FACS number of each column.
        region_masks: (N, len(regions), H, W) coverage of each region, as
            :meth:`cfer.data.synthetic.SyntheticFaces.region_masks` or
            ``FaceRenderer.render(keys, regions=True).regions`` give it.
        threshold: An AU is active above this intensity (see :func:`active_regions`).
        regions: Name of each channel of ``region_masks``.
        au_region: Regions each AU moves.

    Returns:
        (N, H, W) bool: covered (coverage >= 0.5) by a region of an active AU; all False for an image
        without active AUs (neutral).
    """
    masks = np.asarray(region_masks)
    if masks.ndim != 4 or masks.shape[1] != len(regions):
        raise ValueError(f"region_masks must be (N, {len(regions)}, H, W), got {masks.shape}")
    channel = {name: index for index, name in enumerate(regions)}
    union = np.zeros((masks.shape[0], *masks.shape[2:]), dtype=bool)
    for image, names in enumerate(active_regions(au_intensities, au_ids, threshold, au_region)):
        for name in names:
            union[image] |= masks[image, channel[name]] >= 0.5
    return union
