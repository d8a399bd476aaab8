"""examples/zero_shot_compounds.py on hand-made features where the answer is known."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))

from zero_shot_compounds import evaluate  # noqa: E402

BASIC = ("happy", "sad", "fearful", "angry", "surprised", "disgusted")
COMPOUNDS = ("happily_surprised", "sadly_angry", "fearfully_surprised")


def _stored(compound_point) -> dict:
    """Basic class j sits at 3·e_j; each compound's images at compound_point(m_a, m_b); 2 subjects per split."""
    basis = 3.0 * torch.eye(6)
    features, targets, subjects = [], [], []
    classes = BASIC + COMPOUNDS
    for split, subject in (("pool", 0), ("validation", 1), ("held_out", 2)):
        for j in range(6):
            features.append(basis[j] + 0.01 * subject)
            targets.append(j)
            subjects.append(subject)
        for k, (a, b) in enumerate(((0, 4), (1, 3), (2, 4))):
            features.append(compound_point(basis[a], basis[b]))
            targets.append(6 + k)
            subjects.append(subject)
    subject_ids = torch.tensor(subjects)
    fields = {"features": torch.stack(features), "targets": torch.tensor(targets), "subject_ids": subject_ids,
              "classes": classes}
    return {"backbones": {"basic": fields}, "compounds": list(COMPOUNDS), "pool": subject_ids == 0,
            "validation": subject_ids == 1, "held_out": subject_ids == 2}


def test_plain_mean_finds_compounds_that_are_their_components_mean() -> None:
    result = evaluate(_stored(lambda a, b: (a + b) / 2))
    assert result["baseline"]["held_out"] == 1.0
    assert result["chance"] == 1 / 3
    assert result["every_image_ncm"]["raw"]["held_out"] == 1.0


def test_a_compound_opposite_its_components_is_never_found() -> None:
    # cosine -1 to its own prior, -0.5 or 0 to the others: no compound image gets its own class
    result = evaluate(_stored(lambda a, b: -(a + b) / 2))
    assert result["baseline"]["held_out"] == 0.0


def test_au_prior_finds_compounds_whose_faces_are_linear_in_their_aus() -> None:
    from cfer.taxonomy import get_category

    classes = BASIC + COMPOUNDS
    au_ids = tuple(sorted({au for name in classes for au in get_category(name).aus}))
    weight = torch.randn(len(au_ids), 8, generator=torch.Generator().manual_seed(0))
    stored = _stored(lambda a, b: a)  # placeholder layout; features replaced below
    targets = stored["backbones"]["basic"]["targets"]
    intensities = torch.stack([torch.tensor([1.0 if au in get_category(classes[int(t)]).aus else 0.0 for au in au_ids])
                               for t in targets])
    stored["backbones"]["basic"]["features"] = 2.0 + intensities @ weight
    result = evaluate(stored, intensities, au_ids)
    assert result["au_chosen"]["held_out"] == 1.0
