"""The renderer's compound deviation: AUs dropped and added, a leaning component, a variant per subject."""

from __future__ import annotations

import numpy as np
import pytest

from cfer.data.synthetic import FaceRenderer
from cfer.data.synthetic.renderer import _AU_COLUMN, deviate_compound, sample_expression
from cfer.data.synthetic.subjects import make_subject
from cfer.taxonomy import get_category

COMPOUND = get_category("happily_disgusted")  # AUs 10, 12, 25; happy (12, 25) + disgusted (9, 10, 17)


def _draws(strength: float, subjects: int = 400) -> tuple[np.ndarray, np.ndarray]:
    before, after = [], []
    for subject in range(subjects):
        traits = make_subject(0, subject)
        aus = sample_expression(COMPOUND, traits, np.random.default_rng(subject))
        before.append(aus)
        after.append(deviate_compound(aus, COMPOUND, traits, strength, np.random.default_rng([subject, 7])))
    return np.stack(before), np.stack(after)


def test_no_deviation_and_basic_categories_are_left_alone() -> None:
    traits = make_subject(0, 0)
    aus = sample_expression(COMPOUND, traits, np.random.default_rng(0))
    assert deviate_compound(aus, COMPOUND, traits, 0.0, np.random.default_rng(1)) is aus
    happy = sample_expression(get_category("happy"), traits, np.random.default_rng(0))
    assert deviate_compound(happy, get_category("happy"), traits, 1.0, np.random.default_rng(1)) is happy


def test_rates_follow_the_strength() -> None:
    before, after = _draws(1.0)
    listed = [_AU_COLUMN[au] for au in COMPOUND.aus]
    dropped = (after[:, listed] == 0) & (before[:, listed] > 0)
    assert 0.2 < dropped.mean() < 0.4  # 0.3 per AU, less the rows where one had to be kept
    assert (after[:, listed] > 0).any(1).all()  # never every prototypical AU
    leaks = [_AU_COLUMN[au] for au in (9, 17)]  # disgust's AUs the compound does not list
    fired = (after[:, leaks] > 0) & (before[:, leaks] == 0)
    assert 0.3 < fired.mean() < 0.5
    _, medium = _draws(0.5)
    assert ((medium[:, listed] == 0) & (before[:, listed] > 0)).mean() < dropped.mean()


def test_one_component_leans() -> None:
    before, after = _draws(1.0)
    happy_only, disgust_only = _AU_COLUMN[12], _AU_COLUMN[10]  # 25 is happy's too; 10 is only disgust's here
    columns = [happy_only, disgust_only]
    kept = after[:, columns] > 0  # a dropped AU is zero, not weaker
    weaker = kept & (after[:, columns] < before[:, columns] - 1e-6)
    assert weaker.any(0).all() and not weaker.all(1).any()  # each side leans sometimes, never both at once
    ratio = after[:, columns][weaker] / before[:, columns][weaker]
    assert ratio.min() >= 1 - 0.7 - 1e-6 and ratio.max() <= 1 - 0.7 * 0.3 + 1e-6


def test_the_variant_is_the_subjects_and_the_setting_is_checked() -> None:
    renderer = FaceRenderer(32, seed=0, compound_deviation=1.0)
    plain = FaceRenderer(32, seed=0)
    keys = [(s, "happily_disgusted", i) for s in range(6) for i in range(2)] + [(0, "happy", 0)]
    deviated, original = renderer.render(keys), plain.render(keys)
    listed = [_AU_COLUMN[au] for au in COMPOUND.aus]  # always drawn in the plain faces
    assert (original.au_intensities[:-1, listed] > 0).all()
    dropped = deviated.au_intensities[:-1, listed] == 0
    assert dropped.any()
    np.testing.assert_array_equal(dropped[0::2], dropped[1::2])  # both images of a subject: one variant
    np.testing.assert_array_equal(deviated.images[-1], original.images[-1])  # basic faces are untouched
    with pytest.raises(ValueError, match="between 0 and 1"):
        FaceRenderer(32, compound_deviation=1.5)
