"""Tests of cfer.data.splits."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cfer.data.splits import subject_kfold, train_val_test_split

# 20 subjects with 3 samples each; labels cycle through 3 classes.
SUBJECTS = np.repeat(np.arange(100, 120), 3)
LABELS = np.tile(np.arange(3), 20)


def subjects_of(indices: np.ndarray) -> set[int]:
    return set(SUBJECTS[indices].tolist())


@pytest.mark.parametrize("labels", [None, LABELS])
def test_folds_hold_out_every_sample_once_and_never_share_a_subject(labels) -> None:
    folds = subject_kfold(SUBJECTS, n_folds=5, seed=3, labels=labels)
    assert len(folds) == 5
    held_out = np.concatenate([val for _, val in folds])
    assert sorted(held_out.tolist()) == list(range(len(SUBJECTS)))
    for train, val in folds:
        assert subjects_of(train).isdisjoint(subjects_of(val))
        assert len(train) + len(val) == len(SUBJECTS)
        assert train.dtype == np.int64 and np.all(np.diff(val) > 0)
        assert len(subjects_of(val)) == 4


def test_folds_are_deterministic_for_a_seed_and_shuffled_across_seeds() -> None:
    first = subject_kfold(SUBJECTS, n_folds=5, seed=0)
    again = subject_kfold(SUBJECTS, n_folds=5, seed=0)
    other = subject_kfold(SUBJECTS, n_folds=5, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(first, again))
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, other))
    # Shuffled: the first fold is not simply the 4 lowest subject ids.
    assert any(subjects_of(val) != set(range(100 + 4 * k, 104 + 4 * k)) for k, (_, val) in enumerate(first))


def test_folds_accept_a_dataset_and_torch_subject_ids() -> None:
    dataset = SimpleNamespace(subject_ids=torch.as_tensor(SUBJECTS))
    from_dataset = subject_kfold(dataset, n_folds=4, seed=0)
    from_array = subject_kfold(SUBJECTS, n_folds=4, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(from_dataset, from_array))


def test_fewer_subjects_than_folds_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="cannot make 10 subject-wise folds from 3 subject"):
        subject_kfold([1, 1, 2, 3], n_folds=10)
    with pytest.raises(ValueError, match="labels has 2 entries"):
        subject_kfold(SUBJECTS, n_folds=5, labels=[0, 1])
    with pytest.raises(ValueError, match="at least 2"):
        subject_kfold(SUBJECTS, n_folds=1)


@pytest.mark.parametrize("fold", [0, 4])
def test_train_val_test_are_disjoint_by_subject_and_cover_everything(fold: int) -> None:
    split = train_val_test_split(SUBJECTS, fold=fold, n_folds=5, val_fraction=0.2, seed=7)
    train, val, test = subjects_of(split.train), subjects_of(split.val), subjects_of(split.test)
    assert train.isdisjoint(val) and train.isdisjoint(test) and val.isdisjoint(test)
    assert sorted(np.concatenate(split).tolist()) == list(range(len(SUBJECTS)))
    # test is exactly the cross-validation fold, so results match subject_kfold's folds.
    assert np.array_equal(split.test, subject_kfold(SUBJECTS, n_folds=5, seed=7)[fold][1])
    assert len(val) == math.ceil(0.2 * 16)


def test_train_val_test_split_is_deterministic_and_allows_no_validation() -> None:
    first = train_val_test_split(SUBJECTS, fold=1, n_folds=5, seed=2)
    again = train_val_test_split(SUBJECTS, fold=1, n_folds=5, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    no_val = train_val_test_split(SUBJECTS, fold=1, n_folds=5, val_fraction=0.0)
    assert len(no_val.val) == 0 and len(no_val.train) + len(no_val.test) == len(SUBJECTS)


def test_train_val_test_split_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"fold must be in \[0, 5\)"):
        train_val_test_split(SUBJECTS, fold=5, n_folds=5)
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_test_split(SUBJECTS, fold=0, n_folds=5, val_fraction=1.0)
    with pytest.raises(ValueError, match="need at least 2"):
        train_val_test_split([1, 2], fold=0, n_folds=2, val_fraction=0.5)


# --- policies: subjects, an official split, images --------------------------------------------------


def _dataset(subjects, labels, partition=None, subjects_known=True, classes=("happy", "sad", "happily_surprised")):
    from cfer.data.dataset import FaceExpressionDataset

    n = len(labels)
    return FaceExpressionDataset(torch.zeros((n, 3, 2, 2), dtype=torch.uint8), torch.as_tensor(labels), classes,
                                 torch.as_tensor(subjects), partition=None if partition is None else
                                 torch.as_tensor(partition), subjects_known=subjects_known)


def test_subject_policy_is_the_basic_phase_split_and_compound_images_follow_their_subject() -> None:
    from cfer.data.splits import TEST, assign_splits

    dataset = _dataset(SUBJECTS, LABELS)
    basic = ("happy", "sad")
    codes = assign_splits(dataset, fold=1, n_folds=5, val_fraction=0.25, seed=3, basic_classes=basic)
    basic_rows = np.flatnonzero(LABELS < 2)
    expected = train_val_test_split(SUBJECTS[basic_rows], fold=1, n_folds=5, val_fraction=0.25, seed=3,
                                    labels=LABELS[basic_rows])
    assert np.array_equal(np.flatnonzero(codes[basic_rows] == TEST), expected.test)
    for subject in np.unique(SUBJECTS):
        assert len(set(codes[SUBJECTS == subject].tolist())) == 1  # one side per person


def test_official_policy_uses_the_partition_and_a_per_class_validation_slice() -> None:
    from cfer.data.splits import TEST, TRAIN, VAL, assign_splits, split_policy

    labels = np.repeat([0, 1, 2], 20)
    partition = np.tile([0, 0, 0, 1], 15)
    dataset = _dataset(np.arange(60), labels, partition, subjects_known=False)
    assert split_policy(dataset) == "official"
    codes = assign_splits(dataset, 0, 10, 0.2, seed=4)
    assert np.array_equal(codes == TEST, partition == 1)
    for label in range(3):
        assert int(((codes == VAL) & (labels == label)).sum()) == math.ceil(0.2 * 15)
    # a class's slice does not depend on which other classes were read
    alone = assign_splits(_dataset(np.arange(20), labels[:20], partition[:20], False, ("happy",)), 0, 10, 0.2, 4)
    assert np.array_equal(alone, codes[:20])
    assert not np.array_equal(codes, assign_splits(dataset, 0, 10, 0.2, seed=5))
    assert set(codes[partition == 0].tolist()) == {TRAIN, VAL}
    with pytest.raises(ValueError, match="one fold"):
        assign_splits(dataset, 1, 10, 0.2, seed=4)


def test_an_official_validation_partition_is_used_as_it_is() -> None:
    from cfer.data.splits import assign_splits

    dataset = _dataset(np.arange(6), [0, 0, 0, 1, 1, 1], [0, 2, 1, 0, 2, 1], subjects_known=False)
    assert assign_splits(dataset, 0, 10, 0.5, seed=0).tolist() == [0, 1, 2, 0, 1, 2]


def test_policies_refuse_what_the_data_cannot_give() -> None:
    from cfer.data.splits import split_policy

    subjectless = _dataset(np.arange(4), [0, 1, 0, 1], subjects_known=False)
    with pytest.raises(ValueError, match="needs subject ids"):
        split_policy(subjectless, "subject")
    with pytest.raises(ValueError, match="needs an official train/test partition"):
        split_policy(_dataset(SUBJECTS, LABELS), "official")
    with pytest.raises(ValueError, match="unknown data.split 'random'"):
        split_policy(subjectless, "random")
    assert split_policy(_dataset(SUBJECTS, LABELS)) == "subject"
    assert split_policy(subjectless, "image") == "image"
