"""The basic-then-compound benchmark: experiences, label order, subject-wise splits, class orders."""

from __future__ import annotations

import pytest
import torch

from cfer.continual.benchmark import (
    build_benchmark,
    draw_compound_orders,
    subject_split,
)
from cfer.data.synthetic import SyntheticConfig, SyntheticFaces
from cfer.taxonomy import BASIC, COMPOUND


@pytest.fixture(scope="module")
def faces() -> SyntheticFaces:
    return SyntheticFaces(SyntheticConfig(subjects=10, size=32, categories=BASIC + COMPOUND))


@pytest.fixture(scope="module")
def incremental(faces: SyntheticFaces):  # type: ignore[no-untyped-def]
    order = draw_compound_orders(COMPOUND, 1, seed=3)[0]
    subjects = subject_split(faces, BASIC, fold=0, n_folds=3, val_fraction=0.25, seed=0)
    return build_benchmark(faces, BASIC, order, subjects, mean=(0.5,) * 3, std=(0.5,) * 3)


def test_experience_zero_holds_the_basic_classes_then_one_compound_each(incremental) -> None:  # type: ignore[no-untyped-def]
    scenario = incremental.scenario
    assert len(scenario.train_stream) == 1 + len(COMPOUND) == incremental.n_experiences
    for stream in (scenario.train_stream, scenario.valid_stream, scenario.test_stream):
        assert set(stream[0].classes_in_this_experience) == set(range(len(BASIC)))
        for index in range(1, len(stream)):
            assert list(stream[index].classes_in_this_experience) == [len(BASIC) + index - 1]
            assert set(stream[index].dataset.targets) == {len(BASIC) + index - 1}


def test_labels_follow_the_order_of_arrival(incremental, faces) -> None:  # type: ignore[no-untyped-def]
    assert incremental.classes[: len(BASIC)] == BASIC
    assert sorted(incremental.classes[len(BASIC) :]) == sorted(COMPOUND)
    train = incremental.data["train"]
    for index in range(1, 4):
        name = incremental.classes_of(index)[0]
        label = len(BASIC) + index - 1
        assert incremental.classes[label] == name
        # every image of that label is an image of that category in the source dataset
        experience = incremental.scenario.train_stream[index].dataset.eval()
        image, target, sample_id, task = experience[0]
        assert target == label and task == 0
        assert int(sample_id) == int(experience.sample_id[0])  # the sample's id, in the batch too
        source_label = faces.classes.index(name)
        source_images = faces.images[faces.targets == source_label].float() / 255
        normalised = (source_images - 0.5) / 0.5
        assert any(torch.allclose(image, candidate, atol=1e-6) for candidate in normalised)
    assert len(set(train.sample_id)) == len(train)


def test_no_subject_is_on_two_sides(incremental, faces) -> None:  # type: ignore[no-untyped-def]
    subjects = incremental.subjects
    assert not set(subjects["train"]) & set(subjects["test"])
    assert not set(subjects["train"]) & set(subjects["valid"])
    assert not set(subjects["valid"]) & set(subjects["test"])
    assert set(subjects["train"]) | set(subjects["valid"]) | set(subjects["test"]) == set(range(10))
    sizes = {split: len(data) for split, data in incremental.data.items()}
    assert sizes == {split: len(ids) * len(incremental.classes) for split, ids in subjects.items()}


def test_splits_sharing_a_subject_are_refused(faces) -> None:  # type: ignore[no-untyped-def]
    subjects = {"train": [0, 1, 2, 3, 4, 5], "valid": [6, 7], "test": [7, 8, 9]}
    with pytest.raises(ValueError, match="share subjects"):
        build_benchmark(faces, BASIC, COMPOUND, subjects, mean=(0.5,) * 3, std=(0.5,) * 3)


def test_orders_are_deterministic_per_seed_and_differ_across_seeds() -> None:
    first = draw_compound_orders(COMPOUND, 3, seed=0)
    assert first == draw_compound_orders(COMPOUND, 3, seed=0)
    assert first != draw_compound_orders(COMPOUND, 3, seed=1)
    assert len(set(first)) == 3
    assert all(sorted(order) == sorted(COMPOUND) for order in first)
    # order k does not depend on how many orders are drawn
    assert draw_compound_orders(COMPOUND, 1, seed=0) == first[:1]
