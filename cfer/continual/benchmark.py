"""The class-incremental benchmark of the paper: 6 basic expressions, then 15 compounds, one at a time.

Maiden & Nakisa (2023) train a basic-expression model first and then add each compound expression as
one new output unit. Here that protocol is an Avalanche ``class_incremental_benchmark`` whose
experience 0 holds the basic classes (trained by :func:`cfer.training.basic.run_basic_phase`) and
whose experience ``k >= 1`` holds the ``k``-th compound class of an order. Labels are renumbered in
order of arrival (basic ``0..5``, then the compounds in stream order), which the growing head of
``strategies`` relies on.

Splits are subject-wise and follow the basic phase: the held-out test subjects are those of the basic
phase's fold (the split is recomputed from the basic classes exactly as
:func:`cfer.training.basic.run_basic_phase` computes it), validation subjects (early stopping only)
come out of the remaining ones, and every image of a subject, basic or compound, lands on that
subject's side. Every sample carries a ``sample_id`` (its position in its split), both as a data
attribute, so replay buffers can be saved as indices and rebuilt on resume, and in the mini-batch,
``(x, y, sample_id, task)`` (see :func:`strategies.batch_sample_ids`), so a frozen teacher's logits
can be kept per sample.

With a :class:`~cfer.core.trunk.FeatureCache`, ``x`` is the frozen trunk's activation of the image
instead of the image: the cache computed it once with the same preprocessing as the eval transform.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from avalanche.benchmarks.scenarios import CLScenario, class_incremental_benchmark
from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark
from avalanche.benchmarks.utils import DataAttribute
from avalanche.benchmarks.utils.classification_dataset import (
    TaskAwareSupervisedClassificationDataset,
)
from avalanche.benchmarks.utils.transform_groups import TransformGroups
from torch import Tensor
from torch.utils.data import TensorDataset
from torchvision.transforms import v2

from cfer.core.trunk import FeatureCache
from cfer.data.dataset import FaceExpressionDataset
from cfer.data.splits import SplitPolicy, assign_splits
from cfer.training.augment import AugmentConfig

__all__ = [
    "SPLITS",
    "IncrementalBenchmark",
    "build_benchmark",
    "draw_compound_orders",
    "make_transforms",
    "stream_splits",
    "subject_split",
    "to_classification_dataset",
]

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "valid", "test")


def draw_compound_orders(compounds: Sequence[str], orders: int, seed: int) -> list[tuple[str, ...]]:
    """Random orders of arrival of the compound classes, as the reference's shuffled lists.

    Args:
        compounds: Compound class names.
        orders: Number of orders to draw.
        seed: Seed; equal seeds give equal orders.

    Returns:
        ``orders`` permutations of ``compounds``.

    Raises:
        ValueError: If ``orders`` is not positive.
    """
    if orders < 1:
        raise ValueError(f"orders must be at least 1, got {orders}")
    generator = np.random.default_rng(seed)
    return [tuple(compounds[i] for i in generator.permutation(len(compounds))) for _ in range(orders)]


def subject_split(
    dataset: FaceExpressionDataset,
    basic_classes: Sequence[str],
    fold: int,
    n_folds: int,
    val_fraction: float,
    seed: int,
) -> dict[str, list[int]]:
    """Subjects of the train, valid and test sides, as the basic phase splits them (subject-wise data).

    Returns:
        Sorted subject ids by split name (``train``, ``valid``, ``test``).
    """
    codes = stream_splits(dataset, basic_classes, fold, n_folds, val_fraction, seed, policy="subject")
    subjects = dataset.subject_ids.numpy()
    return {name: sorted({int(s) for s in subjects[codes == code]}) for code, name in enumerate(SPLITS)}


def stream_splits(
    dataset: FaceExpressionDataset,
    basic_classes: Sequence[str],
    fold: int,
    n_folds: int,
    val_fraction: float,
    seed: int,
    policy: SplitPolicy = "auto",
) -> np.ndarray:
    """The side of every image of the stream, as the basic phase splits its basic images.

    The basic images are split exactly as :func:`cfer.training.basic.run_basic_phase` splits them,
    so the test side holds only images the basic model never saw. Subject-wise, every compound image
    follows its subject; with an official train/test split (RAF-DB), each image follows its
    partition (see :func:`cfer.data.splits.assign_splits`).

    Args:
        dataset: Images of every class of the stream.
        basic_classes: Names of the basic classes.
        fold: The basic phase's fold.
        n_folds: The basic phase's number of folds.
        val_fraction: Share of the non-test subjects (or images) used for validation.
        seed: The basic phase's seed.
        policy: The basic phase's ``data.split``.

    Returns:
        Split codes, shape (N,): 0 train, 1 valid, 2 test (positions in :data:`SPLITS`).
    """
    return assign_splits(dataset, fold, n_folds, val_fraction, seed, policy, basic_classes=basic_classes)


def make_transforms(
    mean: Sequence[float], std: Sequence[float], augment: AugmentConfig
) -> tuple[v2.Compose, v2.Compose]:
    """Per-image transforms of uint8 ``(3, H, W)`` images: ``(train, eval)``.

    Avalanche's data loaders transform one sample at a time, so the paper's augmentation is
    torchvision's per-image ``RandomHorizontalFlip`` and ``RandomAffine`` with the ranges of
    ``augment``; they draw from the global torch generator, which resume restores.
    """
    preprocess = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    train = list(preprocess)
    if augment.enabled:
        if augment.flip:
            train.append(v2.RandomHorizontalFlip())
        train.append(
            v2.RandomAffine(
                degrees=augment.rotation,
                translate=(augment.translate, augment.translate),
                scale=(1.0 - augment.zoom, 1.0 + augment.zoom),
            )
        )
    return v2.Compose(train), v2.Compose(preprocess)


def to_classification_dataset(
    dataset: FaceExpressionDataset,
    train_transform: v2.Compose | None,
    eval_transform: v2.Compose | None,
    inputs: Tensor | None = None,
    sample_ids_in_batch: bool = True,
) -> TaskAwareSupervisedClassificationDataset:
    """Wraps an in-memory dataset for Avalanche, with ``train``/``eval`` transform groups.

    Items are ``(x, target, sample_id, task_label)`` with task label 0, ``x`` the image (or
    ``inputs``' row) and ``sample_id`` the sample's position in ``dataset``, also a data attribute.

    Args:
        dataset: The images and targets.
        train_transform: Per-sample transform when training; None for none.
        eval_transform: Per-sample transform when evaluating; None for none.
        inputs: What ``x`` is instead of the image, one row per sample (cached trunk activations).
        sample_ids_in_batch: False gives Avalanche's usual ``(x, target, task_label)`` items (for
            strategies that unpack three fields, as Avalanche's iCaRL does).
    """
    targets = dataset.targets.tolist()
    groups = TransformGroups({"train": train_transform, "eval": eval_transform}, current_group="train")
    sample_ids = list(range(len(targets)))
    # task-aware: LwF reads the task_set of experiences; the task label must stay the last field
    return TaskAwareSupervisedClassificationDataset(
        [TensorDataset(dataset.images if inputs is None else inputs, dataset.targets)],
        data_attributes=[
            DataAttribute(targets, "targets"),
            DataAttribute(sample_ids, "sample_id", use_in_getitem=sample_ids_in_batch),
            DataAttribute([0] * len(targets), "targets_task_labels", use_in_getitem=True),
        ],
        transform_groups=groups,
    )


@dataclass
class IncrementalBenchmark:
    """A basic-then-compound class-incremental benchmark and what it was built from."""

    scenario: CLScenario  # Avalanche benchmark with train_stream, valid_stream and test_stream
    classes: tuple[str, ...]  # class name of each label, in order of arrival
    num_basic: int  # classes of experience 0
    subjects: dict[str, list[int]]  # subject ids of each split
    data: dict[str, TaskAwareSupervisedClassificationDataset]  # whole splits, labels in arrival order
    three_field_data: dict[str, TaskAwareSupervisedClassificationDataset]  # the same, items (x, y, task)
    # (valence, arousal) of each split's samples by sample_id, (n, 2), when the images have them
    valence_arousal: dict[str, Tensor] | None = None

    @property
    def n_experiences(self) -> int:
        """Experiences of the stream: 1 basic + one per compound class."""
        return len(self.classes) - self.num_basic + 1

    def classes_of(self, experience: int) -> tuple[str, ...]:
        """Class names of one experience."""
        if experience == 0:
            return self.classes[: self.num_basic]
        return (self.classes[self.num_basic + experience - 1],)

    def legacy_scenario(self):  # type: ignore[no-untyped-def]
        """The same train/test streams from Avalanche's deprecated ``nc_benchmark``.

        Only for Avalanche's iCaRL, which reads ``experience.benchmark.n_classes_per_exp`` and
        ``classes_order``, attributes that the current generators no longer provide, and unpacks
        three fields per item.
        """
        return nc_benchmark(
            self.three_field_data["train"],
            self.three_field_data["test"],
            n_experiences=self.n_experiences,
            task_labels=False,
            fixed_class_order=list(range(len(self.classes))),
            per_exp_classes={0: self.num_basic},
        )


def build_benchmark(
    dataset: FaceExpressionDataset,
    basic_classes: Sequence[str],
    compound_order: Sequence[str],
    splits: np.ndarray | dict[str, list[int]],
    mean: Sequence[float],
    std: Sequence[float],
    augment: AugmentConfig = AugmentConfig(),
    cache: FeatureCache | None = None,
) -> IncrementalBenchmark:
    """Builds the benchmark of one order of compound classes.

    Args:
        dataset: Images of (at least) every class named.
        basic_classes: Classes of experience 0 (the basic phase's, in its output order).
        compound_order: Compound classes, one experience each, in order of arrival.
        splits: The side of each image of ``dataset`` (codes from :func:`stream_splits`), or subject
            ids by split name (from :func:`subject_split`): every image follows its subject.
        mean: Per-channel normalisation mean the backbone expects.
        std: Per-channel normalisation std.
        augment: Augmentation of the training images.
        cache: Frozen-trunk activations of every image of ``dataset`` (one row each, in order); the
            stream then yields them instead of the images, without transforms.

    Returns:
        The benchmark; its labels follow ``basic_classes + compound_order``.

    Raises:
        ValueError: If the splits share subjects, a split lacks a class, or a class repeats.
    """
    codes = _split_codes(dataset, splits)
    names = tuple(basic_classes) + tuple(compound_order)
    if cache is not None and len(cache) != len(dataset):
        raise ValueError(f"the feature cache has {len(cache)} rows for a dataset of {len(dataset)} images")
    ordered = dataset.select_classes(names)  # labels now follow the order of arrival; rows keep their order
    rows = torch.isin(dataset.targets, torch.tensor([dataset.classes.index(n) for n in names])).nonzero().flatten()
    ordered_codes = torch.as_tensor(codes)[rows]
    transforms = make_transforms(mean, std, augment) if cache is None else (_as_float32(cache),) * 2
    data: dict[str, TaskAwareSupervisedClassificationDataset] = {}
    three_field_data: dict[str, TaskAwareSupervisedClassificationDataset] = {}
    subjects: dict[str, list[int]] = {}
    affect: dict[str, Tensor] = {}
    for code, split in enumerate(SPLITS):
        keep = (ordered_codes == code).nonzero().flatten()
        part = ordered.subset(keep)
        subjects[split] = part.subjects().tolist() if dataset.subjects_known else []
        missing = sorted(set(range(len(names))) - set(part.targets.tolist()))
        if missing:
            raise ValueError(f"split {split!r} has no images of {[names[i] for i in missing]}")
        inputs = None if cache is None else cache[rows[keep]]
        if part.valence_arousal is not None:
            affect[split] = part.valence_arousal
        data[split] = to_classification_dataset(part, *transforms, inputs=inputs)
        three_field_data[split] = to_classification_dataset(part, *transforms, inputs=inputs, sample_ids_in_batch=False)
    scenario = class_incremental_benchmark(
        dict(data),
        class_order=list(range(len(names))),
        num_classes_per_exp=[len(basic_classes)] + [1] * len(compound_order),
    )
    logger.info(
        "benchmark: %d experiences, %s images per split",
        len(compound_order) + 1,
        {split: len(d) for split, d in data.items()},
    )
    return IncrementalBenchmark(scenario, names, len(basic_classes), subjects, data, three_field_data,
                                affect if ordered.valence_arousal is not None else None)


def _split_codes(dataset: FaceExpressionDataset, splits: np.ndarray | dict[str, list[int]]) -> np.ndarray:
    """Per-image split codes, from codes or from subject lists (images of unlisted subjects: code -1)."""
    if not isinstance(splits, dict):
        codes = np.asarray(splits)
        if codes.shape != (len(dataset),):
            raise ValueError(f"splits must hold one code per image, shape ({len(dataset)},), got {codes.shape}")
        return codes
    if set(splits) != set(SPLITS):
        raise ValueError(f"subjects must have the keys {list(SPLITS)}, got {sorted(splits)}")
    for first, second in ((0, 1), (0, 2), (1, 2)):
        shared = set(splits[SPLITS[first]]) & set(splits[SPLITS[second]])
        if shared:
            raise ValueError(f"splits {SPLITS[first]} and {SPLITS[second]} share subjects {sorted(shared)[:5]}")
    codes = np.full(len(dataset), -1, dtype=np.int8)
    for code, split in enumerate(SPLITS):
        codes[np.isin(dataset.subject_ids.numpy(), splits[split])] = code
    return codes


def _as_float32(cache: FeatureCache) -> v2.ToDtype | None:
    # float16 caches are computed in float32 and stored halved; the tail trains in float32
    return None if cache.activations.dtype == torch.float32 else v2.ToDtype(torch.float32)
