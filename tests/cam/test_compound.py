"""Basic-compound similarity on hand-made maps, and maps from a model that lacks a class."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cfer.cam import CamExplainer, basic_compound_maps, compound_similarity, summarize_similarity
from cfer.models import ModelConfig, create_model
from cfer.taxonomy import BASIC, get_category


def blob(row: float, col: float, size: int = 16) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size]
    return np.exp(-((rows - row) ** 2 + (cols - col) ** 2) / 8.0)


def hand_made_maps(compound: str, images: int = 5, noise: float = 0.05, seed: int = 0) -> dict[str, np.ndarray]:
    """The compound's map is the sum of its components' blobs; other classes look elsewhere."""
    rng = np.random.default_rng(seed)
    first, second = get_category(compound).components
    spots = {first: (3, 3), second: (12, 12)}
    others = iter([(3, 12), (12, 3), (8, 8), (1, 8)])
    maps = {}
    for name in BASIC:
        row, col = spots.get(name) or next(others)
        maps[name] = np.stack([blob(row, col) + noise * rng.random((16, 16)) for _ in range(images)])
    maps[compound] = maps[first] + maps[second]
    return maps


def test_components_are_more_similar_than_the_other_basic_classes():
    scores = compound_similarity(hand_made_maps("happily_surprised"), "happily_surprised", top_fraction=0.05)
    assert scores["pearson_components"].shape == (5,)
    assert (scores["pearson_components"] > scores["pearson_others"]).all()
    assert (scores["iou_components"] > scores["iou_others"]).all()


def test_identical_maps_are_perfectly_similar():
    maps = {name: np.tile(blob(5, 5), (2, 1, 1)) for name in BASIC + ("sadly_angry",)}
    scores = compound_similarity(maps, "sadly_angry")
    for key in ("pearson_components", "pearson_others", "iou_components", "iou_others"):
        np.testing.assert_allclose(scores[key], 1.0)


def test_summary_pools_images_and_tests_the_paired_difference():
    per_compound = {name: compound_similarity(hand_made_maps(name, seed=i), name, top_fraction=0.05)
                    for i, name in enumerate(("happily_surprised", "sadly_angry", "appalled"))}
    summary = summarize_similarity(per_compound)
    overall = summary["overall"]
    assert overall["images"] == 15 and summary["per_compound"]["appalled"]["images"] == 5
    assert overall["pearson_components_higher"] == 1.0
    assert overall["pearson_wilcoxon_p"] < 0.001
    assert overall["pearson_components"] > overall["pearson_others"]


def test_missing_maps_are_named():
    maps = hand_made_maps("happily_surprised")
    del maps["surprised"]
    with pytest.raises(KeyError, match="surprised"):
        compound_similarity(maps, "happily_surprised")


def test_basic_compound_maps_with_and_without_a_compound_output():
    torch.manual_seed(0)
    model = create_model(ModelConfig(backbone="mobilenetv3_small_050", pretrained="none"), num_classes=len(BASIC))
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with CamExplainer(model, BASIC, input_size=32, min_map_size=4) as explainer:
        with pytest.raises(KeyError, match="no class 'sadly_angry'.*'happy'"):
            basic_compound_maps(explainer, images, "sadly_angry")
        maps = basic_compound_maps(explainer, images, "sadly_angry", require_compound=False)
        with pytest.raises(ValueError, match="not a compound"):
            basic_compound_maps(explainer, images, "sad")
    assert list(maps)[:2] == ["sad", "angry"] and set(maps) == set(BASIC)
    assert maps["sad"].shape == (2, 32, 32)
