"""Subject-wise splits: no person ever appears on both sides of a split.

Facial-expression models recognise identities easily, so a test set that shares
subjects with the training set overstates accuracy. Maiden & Nakisa (2023)
evaluate with 10-fold cross-validation over the 230 CFEE subjects; these helpers
produce such folds with scikit-learn and add an early-stopping slice carved out of
the training subjects, so that the reported test fold is never used to stop
training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

import numpy as np
from numpy.typing import ArrayLike
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, StratifiedGroupKFold

if TYPE_CHECKING:
    from cfer.data.dataset import FaceExpressionDataset

__all__ = [
    "SPLIT_POLICIES",
    "HasSubjectIds",
    "SplitPolicy",
    "SubjectSplit",
    "assign_splits",
    "split_indices",
    "split_policy",
    "subject_kfold",
    "train_val_test_split",
]

SplitPolicy = Literal["auto", "subject", "official", "image"]
SPLIT_POLICIES: tuple[str, ...] = ("auto", "subject", "official", "image")
TRAIN, VAL, TEST = 0, 1, 2


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


# --- policies: subjects, an official train/test split, or images -----------------------------------


def split_policy(dataset: FaceExpressionDataset, policy: SplitPolicy = "auto") -> str:
    """Which split a dataset gets: ``"official"``, ``"subject"`` or ``"image"``.

    ``auto`` takes the dataset's official train/test partition when it has one (RAF-DB), else
    subject-wise folds when it knows its subjects (CFEE, the synthetic faces, a CSV with a subject
    column). A dataset with neither is refused rather than split image by image without a word:
    ``image`` must be asked for.

    Args:
        dataset: The images.
        policy: ``auto``, or the policy to insist on.

    Returns:
        The resolved policy.

    Raises:
        ValueError: If the asked policy is impossible, or ``auto`` finds neither partition nor subjects.
    """
    if policy not in SPLIT_POLICIES:
        raise ValueError(f"unknown data.split {policy!r}; valid values are {list(SPLIT_POLICIES)}")
    has_partition = dataset.partition is not None and bool((dataset.partition >= 0).all())
    if policy == "official" and not has_partition:
        raise ValueError("data.split=official needs an official train/test partition for every image (RAF-DB's "
                         "file-name prefixes, or a CSV 'partition' column); this dataset has none")
    if policy == "subject" and not dataset.subjects_known:
        raise ValueError("data.split=subject needs subject ids, and this dataset has none; give a CSV manifest a "
                         "'subject' column, or use data.split=official or image")
    if policy != "auto":
        return policy
    if has_partition:
        return "official"
    if dataset.subjects_known:
        return "subject"
    raise ValueError("this dataset has neither subject ids nor an official train/test partition, so no split "
                     "keeps people apart: add a 'subject' (or 'partition') column to a CSV manifest, or pass "
                     "--set data.split=image to split image by image (the same person may then be in train and test)")


def assign_splits(
    dataset: FaceExpressionDataset,
    fold: int,
    n_folds: int,
    val_fraction: float,
    seed: int,
    policy: SplitPolicy = "auto",
    basic_classes: Sequence[str] | None = None,
) -> np.ndarray:
    """The split of every image: 0 train, 1 validation, 2 test.

    * ``subject``: subject-wise fold ``fold`` of :func:`train_val_test_split`, computed on the images
      of ``basic_classes`` (all images without it); every image follows its subject. Subjects with no
      basic image (a second dataset's) are split the same way among themselves.
    * ``image``: the same with every image its own subject.
    * ``official``: test is the dataset's official test partition; validation is its validation
      partition when it has one (RAF-CE), else it takes, in each class,
      ``val_fraction`` of the subjects (images, without subjects) of the official train partition,
      chosen by a seeded hash of the subject id, so that a class's choice never depends on which
      other classes were read. ``fold`` must be 0 (there is one official split).

    The basic phase splits its basic-class images with this function, and the continual stream
    splits all images with ``basic_classes`` set, so the basic images land on the same sides.

    Returns:
        Split codes, int8 of shape (N,).

    Raises:
        ValueError: If the policy cannot apply (see :func:`split_policy`) or a fold is out of range.
    """
    resolved = split_policy(dataset, policy)
    if resolved == "official":
        if fold != 0:
            raise ValueError(f"an official train/test split has one fold; got fold {fold}")
        return _official_codes(dataset, val_fraction, seed)
    groups = dataset.subject_ids.numpy() if resolved == "subject" else np.arange(len(dataset))
    labels = dataset.targets.numpy()
    basic = np.ones(len(dataset), dtype=bool)
    if basic_classes is not None:
        basic = np.isin(labels, [dataset.classes.index(name) for name in basic_classes])
    codes = np.full(len(dataset), TEST, dtype=np.int8)
    # the subjects of basic images, split on those images; then any subject without a basic image
    anchored = np.isin(groups, groups[basic])
    for rows, anchor in ((anchored, basic), (~anchored, ~anchored)):
        if not anchor.any():
            continue
        split = train_val_test_split(groups[anchor], fold=fold, n_folds=n_folds, val_fraction=val_fraction,
                                     seed=seed, labels=labels[anchor])
        for code, indices in ((TRAIN, split.train), (VAL, split.val), (TEST, split.test)):
            codes[rows & np.isin(groups, groups[anchor][indices])] = code
    return codes


def split_indices(codes: np.ndarray) -> SubjectSplit:
    """Sample positions of each split code (see :func:`assign_splits`)."""
    return SubjectSplit(*(np.flatnonzero(codes == code).astype(np.int64) for code in (TRAIN, VAL, TEST)))


def _official_codes(dataset: FaceExpressionDataset, val_fraction: float, seed: int) -> np.ndarray:
    assert dataset.partition is not None  # split_policy checked it
    partition = dataset.partition.numpy()
    groups = dataset.subject_ids.numpy()
    labels = dataset.targets.numpy()
    codes = np.select([partition == 1, partition == 2], [TEST, VAL], TRAIN).astype(np.int8)
    if (partition == 2).any():
        return codes  # the dataset's own validation partition (RAF-CE)
    val_groups: list[np.ndarray] = []
    for label in np.unique(labels):
        class_groups = np.unique(groups[(labels == label) & (partition == 0)])
        count = math.ceil(val_fraction * len(class_groups)) if len(class_groups) > 1 else 0
        val_groups.append(class_groups[np.argsort(_hash_rank(class_groups, seed), kind="stable")[:count]])
    codes[(partition == 0) & np.isin(groups, np.concatenate(val_groups))] = VAL
    return codes


def _hash_rank(groups: np.ndarray, seed: int) -> np.ndarray:
    """A seeded pseudo-random rank of each group id that does not depend on the other ids (splitmix64)."""
    with np.errstate(over="ignore"):
        value = groups.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        value = (value ^ (value >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        value = (value ^ (value >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return value ^ (value >> np.uint64(31))
