"""Subject-wise splits: no person ever appears on both sides of a split.

Facial-expression models recognise identities easily, so a test set that shares
subjects with the training set overstates accuracy. Maiden & Nakisa (2023)
evaluate with 10-fold cross-validation over the 230 CFEE subjects; these helpers
produce such folds with scikit-learn and add an early-stopping slice carved out of
the training subjects, so that the reported test fold is never used to stop
training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np
from numpy.typing import ArrayLike
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, StratifiedGroupKFold

__all__ = ["HasSubjectIds", "SubjectSplit", "subject_kfold", "train_val_test_split"]


class HasSubjectIds(Protocol):
    """Anything with a per-sample ``subject_ids`` array, e.g. a FaceExpressionDataset."""

    subject_ids: ArrayLike


class SubjectSplit(NamedTuple):
    """Sample positions of a three-way subject-wise split, each int64 of shape (M,)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def subject_kfold(
    subject_ids: ArrayLike | HasSubjectIds,
    n_folds: int = 10,
    seed: int = 0,
    labels: ArrayLike | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """K-fold cross-validation with whole subjects held out.

    Without ``labels``, subjects are shuffled with ``seed`` and dealt into
    ``n_folds`` folds of near-equal subject count (``GroupKFold(shuffle=True)``).
    With ``labels``, ``StratifiedGroupKFold(shuffle=True)`` also balances the class
    distribution across folds.

    Args:
        subject_ids: Subject of each sample, shape (N,), or an object exposing
            ``subject_ids``.
        n_folds: Number of folds; every sample is held out exactly once.
        seed: Seed of the subject shuffle; equal seeds give equal folds.
        labels: Optional class of each sample, shape (N,), for stratification.

    Returns:
        One ``(train_indices, held_out_indices)`` pair per fold, each a sorted int64
        array of sample positions.

    Raises:
        ValueError: If ``n_folds`` < 2, there are fewer subjects than folds, or
            ``labels`` does not match ``subject_ids`` in length.
    """
    groups = _subject_array(subject_ids)
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    n_subjects = len(np.unique(groups))
    if n_subjects < n_folds:
        raise ValueError(
            f"cannot make {n_folds} subject-wise folds from {n_subjects} subject(s); "
            "use fewer folds or more subjects"
        )
    placeholder_features = np.zeros((len(groups), 1))
    if labels is None:
        splitter = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        folds = splitter.split(placeholder_features, groups=groups)
    else:
        label_array = np.asarray(labels).reshape(-1)
        if len(label_array) != len(groups):
            raise ValueError(
                f"labels has {len(label_array)} entries but subject_ids has {len(groups)}"
            )
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        folds = splitter.split(placeholder_features, label_array, groups=groups)
    return [
        (np.sort(train).astype(np.int64), np.sort(test).astype(np.int64)) for train, test in folds
    ]


def train_val_test_split(
    subject_ids: ArrayLike | HasSubjectIds,
    fold: int,
    n_folds: int = 10,
    val_fraction: float = 0.1,
    seed: int = 0,
    labels: ArrayLike | None = None,
) -> SubjectSplit:
    """Three disjoint subject-wise sets for one cross-validation fold.

    ``test`` is the fold held out by :func:`subject_kfold` with the same
    ``n_folds``, ``seed`` and ``labels``, so it is the split to report. ``val`` is
    a random ``val_fraction`` of the remaining subjects (rounded up, via
    ``GroupShuffleSplit``), for early stopping and model selection; ``train`` is
    the rest.

    Args:
        subject_ids: Subject of each sample, shape (N,), or an object exposing
            ``subject_ids``.
        fold: Which fold to hold out as test, in ``[0, n_folds)``.
        n_folds: Number of cross-validation folds.
        val_fraction: Fraction of the non-test subjects to put in ``val``, in
            ``[0, 1)``; 0 gives an empty ``val``.
        seed: Seed of both the fold assignment and the validation draw.
        labels: Optional class of each sample, shape (N,), to stratify the folds.

    Returns:
        A :class:`SubjectSplit` of sorted int64 sample positions.

    Raises:
        ValueError: If ``fold`` or ``val_fraction`` is out of range, or too few
            subjects remain to draw a validation set and keep a training set.
    """
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold must be in [0, {n_folds}), got {fold}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    groups = _subject_array(subject_ids)
    rest, test = subject_kfold(groups, n_folds=n_folds, seed=seed, labels=labels)[fold]
    if val_fraction == 0.0:
        return SubjectSplit(train=rest, val=np.zeros(0, dtype=np.int64), test=test)

    rest_groups = groups[rest]
    n_rest_subjects = len(np.unique(rest_groups))
    if n_rest_subjects < 2:
        raise ValueError(
            f"only {n_rest_subjects} subject(s) remain outside test fold {fold}; "
            "need at least 2 to draw a validation set (or pass val_fraction=0)"
        )
    splitter = GroupShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
    train_in_rest, val_in_rest = next(
        splitter.split(np.zeros((len(rest), 1)), groups=rest_groups)
    )
    return SubjectSplit(
        train=np.sort(rest[train_in_rest]).astype(np.int64),
        val=np.sort(rest[val_in_rest]).astype(np.int64),
        test=test,
    )


def _subject_array(subject_ids: ArrayLike | HasSubjectIds | Sequence[int]) -> np.ndarray:
    source = getattr(subject_ids, "subject_ids", subject_ids)
    array = np.asarray(source).reshape(-1)
    if array.size == 0:
        raise ValueError("subject_ids is empty; nothing to split")
    return array
