"""The embedded synthetic dataset: determinism, expressions, regions and the dataset wrapper."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from cfer.data.synthetic import (
    AU_REGION,
    REGIONS,
    RENDERED_AUS,
    FaceRenderer,
    SyntheticConfig,
    SyntheticFaces,
    make_subject,
    sample_expression,
)
from cfer.data.synthetic.affect import image_affect
from cfer.taxonomy import ALL_AUS, CATEGORIES, CATEGORY_NAMES, get_category


def test_same_key_renders_the_same_bytes_in_any_batch():
    keys = [(s, c, i) for s, c, i in itertools.product(range(3), ("happy", "awed", 1), range(2))]
    together = FaceRenderer(48, seed=7).render(keys, batch_size=5).images
    alone = np.concatenate([FaceRenderer(48, seed=7).render([key]).images for key in keys])
    assert together.dtype == np.uint8
    assert np.array_equal(together, alone)


def test_seed_subject_and_index_change_the_image():
    base = FaceRenderer(32, seed=0).render([(0, "happy", 0)]).images
    assert not np.array_equal(base, FaceRenderer(32, seed=1).render([(0, "happy", 0)]).images)
    assert not np.array_equal(base, FaceRenderer(32, seed=0).render([(1, "happy", 0)]).images)
    assert not np.array_equal(base, FaceRenderer(32, seed=0).render([(0, "happy", 1)]).images)


def test_categories_of_one_subject_are_distinct_images():
    images = FaceRenderer(32, seed=0).render([(3, name, 0) for name in CATEGORY_NAMES]).images
    flat = images.reshape(len(CATEGORY_NAMES), -1)
    for a, b in itertools.combinations(range(len(CATEGORY_NAMES)), 2):
        assert not np.array_equal(flat[a], flat[b]), (CATEGORY_NAMES[a], CATEGORY_NAMES[b])


@pytest.mark.parametrize("size", [32, 57, 224])
def test_any_resolution_renders(size):
    batch = FaceRenderer(size).render([(0, "surprised", 0), (1, "sad", 0)], regions=True)
    assert batch.images.shape == (2, 3, size, size)
    assert batch.regions.shape == (2, len(REGIONS), size, size)
    # A face, not a flat image: the picture has real contrast.
    assert batch.images.std() > 10


def test_renderer_draws_every_au_the_taxonomy_uses():
    assert set(ALL_AUS) <= set(RENDERED_AUS)
    assert set(AU_REGION) == set(RENDERED_AUS)


@pytest.mark.parametrize("category", CATEGORIES, ids=lambda c: c.name)
def test_expression_activates_the_prototypical_aus(category):
    traits = make_subject(0, 5)
    optional = {au for au, _ in category.optional_aus}
    for index in range(5):
        intensity = sample_expression(category, traits, np.random.default_rng(index))
        assert intensity.shape == (len(RENDERED_AUS),)
        assert ((0 <= intensity) & (intensity <= 1)).all()
        for au in category.aus:
            assert intensity[RENDERED_AUS.index(au)] >= 0.35, (category.name, au)
        # Whatever else fires is an optional AU or weak spontaneous activity.
        for column, au in enumerate(RENDERED_AUS):
            if au not in category.aus and au not in optional:
                assert intensity[column] <= 0.25 * traits.expressivity[column] + 1e-6


def test_optional_aus_fire_at_about_their_frequency():
    category = get_category("happy")  # AU6 is optional for happy
    (au, frequency), = [pair for pair in category.optional_aus if pair[0] == 6]
    traits = make_subject(0, 0)
    fired = [sample_expression(category, traits, np.random.default_rng(i))[RENDERED_AUS.index(au)] > 0.0
             for i in range(600)]
    assert abs(np.mean(fired) - frequency) < 0.07


@pytest.mark.parametrize("au", RENDERED_AUS)
def test_each_au_moves_its_own_region(au):
    """Switching one AU on changes the pixels mostly inside the facial region FACS says it moves."""
    renderer = FaceRenderer(96, seed=0)
    keys = [(subject, "neutral", 0) for subject in range(4)]
    off = np.zeros((len(keys), len(RENDERED_AUS)), np.float32)
    on = off.copy()
    on[:, RENDERED_AUS.index(au)] = 1.0
    still = renderer.render(keys, au_intensities=off, regions=True)
    moved = renderer.render(keys, au_intensities=on).images
    change = np.abs(moved.astype(np.float32) - still.images.astype(np.float32)).sum(1)  # (B, H, W)
    region = still.regions[:, [REGIONS.index(name) for name in AU_REGION[au]]].max(1)
    assert change.sum() > 0, f"AU{au} changes nothing"
    inside = (change * region).sum() / change.sum()
    assert inside > 0.5, f"AU{au}: only {inside:.0%} of the change falls in the {AU_REGION[au]} regions"


def test_au_override_is_checked():
    with pytest.raises(ValueError, match="au_intensities must have shape"):
        FaceRenderer(32).render([(0, "happy", 0)], au_intensities=np.zeros((1, 3)))


def test_subject_traits_persist_across_categories():
    renderer = FaceRenderer(32, seed=3)
    assert renderer.subject(4) == renderer.subject(4) or np.array_equal(
        renderer.subject(4).expressivity, make_subject(3, 4).expressivity
    )
    a, b = make_subject(3, 4), make_subject(3, 5)
    assert a.face_half_width != b.face_half_width


def test_synthetic_faces_carry_every_target(tmp_path):
    config = SyntheticConfig(subjects=3, size=32, categories=("happy", "sadly_angry", "neutral"), samples_per_category=2)
    faces = SyntheticFaces(config, cache_dir=tmp_path)
    assert len(faces) == 3 * 3 * 2
    assert faces.classes == ("happy", "sadly_angry", "neutral")
    assert faces.images.shape == (18, 3, 32, 32)
    assert faces.au_ids == RENDERED_AUS
    for i in range(len(faces)):
        subject, cfee_id, _ = faces.keys[i].tolist()
        name = faces.classes[int(faces.targets[i])]
        assert get_category(cfee_id).name == name
        assert int(faces.subject_ids[i]) == subject
        category = get_category(name)
        traits = make_subject(0, subject)
        resting = np.array([[traits.resting_mouth, traits.resting_brow]], dtype=np.float32)
        expected = image_affect([name], RENDERED_AUS, faces.au_intensities[i : i + 1].numpy(), resting)[0]
        assert torch.allclose(faces.valence_arousal[i], torch.from_numpy(expected))
        for au in category.aus:
            assert faces.au_intensities[i, RENDERED_AUS.index(au)] > 0
    # The pixels are the renderer's, and the cache gives them back unchanged.
    direct = FaceRenderer(32, 0).render([tuple(k) for k in faces.keys.tolist()[:4]]).images
    assert np.array_equal(faces.images[:4].numpy(), direct)
    again = SyntheticFaces(config, cache_dir=tmp_path)
    assert torch.equal(again.images, faces.images) and torch.equal(again.targets, faces.targets)
    assert faces.region_masks([0, 5]).shape == (2, len(REGIONS), 32, 32)


def test_first_subject_offsets_the_identities():
    faces = SyntheticFaces(SyntheticConfig(subjects=2, size=32, categories=("happy",), first_subject=10))
    assert faces.subject_ids.tolist() == [10, 11]


def test_bad_config_is_refused():
    with pytest.raises(ValueError):
        SyntheticFaces(SyntheticConfig(subjects=0, size=32))
    with pytest.raises(KeyError, match="happy"):
        SyntheticFaces(SyntheticConfig(subjects=1, size=32, categories=("hapy",)))
    with pytest.raises(ValueError, match="size"):
        FaceRenderer(8)


def test_valence_and_arousal_vary_with_the_rendered_expression():
    from cfer.data.synthetic.affect import REFERENCE_INTENSITY, RESTING_WEIGHTS

    faces = SyntheticFaces(SyntheticConfig(subjects=12, size=32, categories=("happy", "sad", "neutral")))
    affect = faces.valence_arousal
    happy, sad, neutral = (faces.targets == k for k in range(3))
    assert affect.abs().max() < 1.0  # nothing sits on the bound
    assert affect[happy, 0].min() > 0 > affect[sad, 0].max()  # the category's side of the circumplex
    for group in (happy, sad, neutral):  # a real spread in every class, neutral included
        assert affect[group].std(0).min() > 0.02
    # by hand: sadness with its prototypical AUs at the reference intensity sits at its point plus the offsets
    # of the AUs drawn (AU 4: -0.10 valence, AU 15: -0.15 valence, AU 1: +0.05 arousal) and the resting face,
    # then through x / (1 + x^4)^(1/4)
    sad_point = get_category("sad")
    intensities = np.zeros((1, len(RENDERED_AUS)), dtype=np.float32)
    intensities[0, [RENDERED_AUS.index(au) for au in sad_point.aus]] = REFERENCE_INTENSITY
    resting = np.array([[0.02, -0.01]], dtype=np.float32)
    valence, arousal = image_affect(["sad"], RENDERED_AUS, intensities, resting)[0]
    weights = {1: (0.0, 0.05), 4: (-0.10, 0.0), 15: (-0.15, 0.0)}
    drawn = [weights[au] for au in sad_point.aus if au in weights]
    raw_v = sad_point.valence + REFERENCE_INTENSITY * sum(v for v, _ in drawn) + 0.02 * RESTING_WEIGHTS[0]
    raw_a = sad_point.arousal + REFERENCE_INTENSITY * sum(a for _, a in drawn) - 0.01 * RESTING_WEIGHTS[1]
    assert valence == pytest.approx(raw_v / (1 + abs(raw_v) ** 4) ** 0.25, abs=1e-6)
    assert arousal == pytest.approx(raw_a / (1 + abs(raw_a) ** 4) ** 0.25, abs=1e-6)


def test_soft_bound_is_odd_increasing_and_never_reaches_one():
    from cfer.data.synthetic.affect import soft_bound

    x = np.linspace(-3, 3, 601)
    y = soft_bound(x)
    assert np.all(np.diff(y) > 0) and np.allclose(y, -soft_bound(-x))
    assert np.abs(y).max() < 1.0
    assert soft_bound(1.0) == pytest.approx(2 ** -0.25)
    assert soft_bound(0.3) == pytest.approx(0.3, abs=2e-3)
