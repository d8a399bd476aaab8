"""Ground-truth regions of the active AUs, on hand-made and rendered faces."""

from __future__ import annotations

import numpy as np
import pytest

from cfer.cam import active_au_mask, active_regions
from cfer.data.synthetic import REGIONS, RENDERED_AUS, FaceRenderer


def test_active_regions_follow_the_au_table_and_the_threshold():
    au_ids = (4, 12, 17)
    intensities = np.array([[0.9, 0.0, 0.0], [0.0, 0.8, 0.2], [0.0, 0.0, 0.0]])
    assert active_regions(intensities, au_ids, threshold=0.3) == [("brows",), ("mouth",), ()]
    assert active_regions(intensities, au_ids, threshold=0.1)[1] == ("chin", "mouth")


def test_mask_is_the_union_of_the_active_regions():
    masks = np.zeros((1, len(REGIONS), 4, 4), dtype=np.float32)
    masks[0, REGIONS.index("brows"), 0] = 1.0
    masks[0, REGIONS.index("mouth"), 3] = 0.6
    masks[0, REGIONS.index("eyes"), 1] = 1.0  # no active AU moves the eyes
    union = active_au_mask(np.array([[0.9, 0.9]]), (4, 12), masks)
    assert union[0].tolist() == [[True] * 4, [False] * 4, [False] * 4, [True] * 4]
    with pytest.raises(ValueError, match="region_masks"):
        active_au_mask(np.array([[0.9]]), (4,), masks[:, :2])


def test_rendered_faces_have_their_regions_where_the_aus_are():
    # One face drawn three times: no AU, only the brow lowerer (AU4), only the lip corner puller (AU12).
    intensities = np.zeros((3, len(RENDERED_AUS)), dtype=np.float32)
    intensities[1, RENDERED_AUS.index(4)] = 0.9
    intensities[2, RENDERED_AUS.index(12)] = 0.9
    batch = FaceRenderer(48, seed=0).render([(0, "neutral", 0)] * 3, regions=True, au_intensities=intensities)
    union = active_au_mask(batch.au_intensities, RENDERED_AUS, batch.regions)
    assert not union[0].any()
    brow_rows, mouth_rows = np.flatnonzero(union[1].any(1)), np.flatnonzero(union[2].any(1))
    assert 0 < union[1].mean() < 0.3 and 0 < union[2].mean() < 0.3
    assert brow_rows.max() < mouth_rows.min()  # the brows lie above the mouth
