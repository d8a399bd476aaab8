"""In-memory container for labelled face images.

Every cfer data source (the synthetic renderer, the CFEE reader) produces a
:class:`FaceExpressionDataset`: all images already decoded into one uint8 tensor,
so that no training epoch re-decodes a file. The same object saves to and loads
from a single ``torch.save`` file, which is the on-disk uint8 cache.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from cfer.io import atomic_write, load_torch_file

__all__ = ["FaceExpressionDataset", "concat_datasets", "load_metadata"]

logger = logging.getLogger(__name__)

# Written into every saved file so that a future layout change can be detected
# instead of silently misread.
_FORMAT = "cfer.FaceExpressionDataset/1"

Indices = Sequence[int] | np.ndarray | Tensor


class FaceExpressionDataset(Dataset[tuple[Any, int]]):
    """Face images with expression labels, subjects and optional continuous targets.

    Compatible with :class:`torch.utils.data.DataLoader` and with Avalanche, which
    reads the ``targets`` attribute to build class-incremental streams.

    Args:
        images: uint8 images, shape (N, 3, H, W).
        targets: Integer class indices into ``classes``, shape (N,); stored as int64.
        classes: Category name of each class index, e.g. ``("happy", "sad")``.
        subject_ids: Integer identity of the person in each image, shape (N,);
            stored as int64. Splits must keep a subject on one side only.
        au_intensities: Optional action-unit intensities, shape (N, n_aus);
            stored as float32.
        au_ids: FACS number of each column of ``au_intensities``, length n_aus.
            Required exactly when ``au_intensities`` is given.
        valence_arousal: Optional (valence, arousal) per image, shape (N, 2);
            stored as float32.
        transform: Optional callable applied in ``__getitem__`` to the uint8
            image of shape (3, H, W), e.g. a torchvision v2 transform.
        partition: Optional official split of each image, shape (N,): 0 train,
            1 test, 2 validation, -1 none (RAF-DB's file-name prefixes, RAF-CE's
            partition file); stored as int64.
        subjects_known: False when the source has no identities; ``subject_ids``
            then holds one id per image, and subject-wise splits are refused
            (see :func:`cfer.data.splits.split_policy`).
        skipped: ``(path, reason)`` of every file the reader left out.

    Raises:
        ValueError: If a field has the wrong shape, dtype, length or value range.
    """

    def __init__(
        self,
        images: Tensor,
        targets: Tensor,
        classes: Sequence[str],
        subject_ids: Tensor,
        au_intensities: Tensor | None = None,
        au_ids: Sequence[int] | None = None,
        valence_arousal: Tensor | None = None,
        transform: Callable[[Tensor], Any] | None = None,
        partition: Tensor | None = None,
        subjects_known: bool = True,
        skipped: Sequence[tuple[str, str]] = (),
    ) -> None:
        if not isinstance(images, Tensor) or images.dtype != torch.uint8:
            raise ValueError(
                f"images must be a torch.uint8 tensor, got {_describe(images)}"
            )
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"images must have shape (N, 3, H, W), got {tuple(images.shape)}"
            )
        n_samples = images.shape[0]

        classes = tuple(classes)
        if not all(isinstance(name, str) and name for name in classes):
            raise ValueError(f"classes must be non-empty strings, got {classes!r}")
        duplicates = sorted({name for name in classes if classes.count(name) > 1})
        if duplicates:
            raise ValueError(f"classes must be unique; repeated: {duplicates}")

        targets = _integer_vector("targets", targets, n_samples)
        if targets.numel() and (targets.min() < 0 or targets.max() >= len(classes)):
            raise ValueError(
                f"targets must lie in [0, {len(classes)}) to index classes "
                f"{classes}, got values in [{int(targets.min())}, {int(targets.max())}]"
            )
        subject_ids = _integer_vector("subject_ids", subject_ids, n_samples)

        if (au_intensities is None) != (au_ids is None):
            raise ValueError("au_intensities and au_ids must be given together")
        au_ids_tuple: tuple[int, ...] = ()
        if au_intensities is not None and au_ids is not None:
            au_ids_tuple = tuple(int(au) for au in au_ids)
            au_intensities = _float_matrix(
                "au_intensities", au_intensities, n_samples, len(au_ids_tuple)
            )
            if len(set(au_ids_tuple)) != len(au_ids_tuple):
                raise ValueError(f"au_ids must be unique, got {au_ids_tuple}")
        if valence_arousal is not None:
            valence_arousal = _float_matrix("valence_arousal", valence_arousal, n_samples, 2)
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable, got {transform!r}")
        if partition is not None:
            partition = _integer_vector("partition", partition, n_samples)
            if partition.numel() and (partition.min() < -1 or partition.max() > 2):
                raise ValueError("partition values must be 0 (train), 1 (test), 2 (validation) or -1 (none)")

        self.images = images
        self.targets = targets
        self.classes: tuple[str, ...] = classes
        self.subject_ids = subject_ids
        self.au_intensities = au_intensities
        self.au_ids: tuple[int, ...] = au_ids_tuple
        self.valence_arousal = valence_arousal
        self.transform = transform
        self.partition = partition
        self.subjects_known = bool(subjects_known)
        self.skipped: tuple[tuple[str, str], ...] = tuple((str(p), str(r)) for p, r in skipped)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        """Returns one sample.

        Args:
            index: Sample position; negative values count from the end.

        Returns:
            ``(image, target)``: the uint8 image of shape (3, H, W), or whatever
            ``transform`` makes of it, and the class index as a Python int.
        """
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def __repr__(self) -> str:
        height, width = self.images.shape[-2:]
        return (
            f"{type(self).__name__}(n={len(self)}, image_size=({height}, {width}), "
            f"classes={len(self.classes)}, subjects={len(self.subjects())}, "
            f"aus={len(self.au_ids)}, valence_arousal={self.valence_arousal is not None})"
        )

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of every image."""
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    def subset(self, indices: Indices) -> FaceExpressionDataset:
        """Selects samples by position.

        Args:
            indices: Sample positions, shape (M,), or a boolean mask, shape (N,).

        Returns:
            A new dataset with the selected samples in the given order, the same
            classes and transform. Tensors are copied (advanced indexing).

        Raises:
            IndexError: If a position is out of range.
        """
        index = _as_index_tensor(indices, len(self))
        return FaceExpressionDataset(
            images=self.images[index],
            targets=self.targets[index],
            classes=self.classes,
            subject_ids=self.subject_ids[index],
            au_intensities=None if self.au_intensities is None else self.au_intensities[index],
            au_ids=self.au_ids if self.au_intensities is not None else None,
            valence_arousal=None if self.valence_arousal is None else self.valence_arousal[index],
            transform=self.transform,
            partition=None if self.partition is None else self.partition[index],
            subjects_known=self.subjects_known,
            skipped=self.skipped,
        )

    def select_classes(self, names: Sequence[str]) -> FaceExpressionDataset:
        """Keeps the samples of some classes and renumbers them.

        Args:
            names: Class names to keep; their order defines the new class indices
                0..k-1.

        Returns:
            A new dataset whose ``classes`` equals ``tuple(names)``; sample order is
            preserved.

        Raises:
            ValueError: If a name is unknown or repeated.
        """
        names = tuple(names)
        unknown = [name for name in names if name not in self.classes]
        if unknown:
            raise ValueError(
                f"unknown class name(s) {unknown}; available classes: {list(self.classes)}"
            )
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"class names must not repeat, got {repeated} more than once")

        # Lookup table from old class index to new one; -1 marks dropped classes.
        old_to_new = torch.full((len(self.classes),), -1, dtype=torch.int64)
        for new_index, name in enumerate(names):
            old_to_new[self.classes.index(name)] = new_index
        new_targets = old_to_new[self.targets]
        keep = new_targets >= 0
        subset = self.subset(keep)
        subset.targets = new_targets[keep]
        subset.classes = names
        return subset

    def with_transform(self, transform: Callable[[Tensor], Any] | None) -> FaceExpressionDataset:
        """Returns a shallow copy (tensors shared) that applies another transform.

        Args:
            transform: Callable applied to each uint8 image of shape (3, H, W), or
                None for raw images.
        """
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable, got {transform!r}")
        clone = copy.copy(self)
        clone.transform = transform
        return clone

    def class_counts(self) -> dict[str, int]:
        """Number of samples per class, in ``classes`` order (zeros included)."""
        counts = torch.bincount(self.targets, minlength=len(self.classes))
        return {name: int(count) for name, count in zip(self.classes, counts)}

    def subjects(self) -> Tensor:
        """Sorted unique subject ids, shape (n_subjects,), int64."""
        return torch.unique(self.subject_ids, sorted=True)

    def save(self, path: str | Path, metadata: Mapping[str, Any] | None = None) -> Path:
        """Writes the dataset to one file, atomically.

        The file is a ``torch.save`` of a dict holding plain tensors, lists, strings
        and numbers only, so :meth:`load` can use ``torch.load(weights_only=True)``.
        The transform is not saved.

        Args:
            path: Destination file; its folder is created if needed.
            metadata: JSON-like values stored alongside (e.g. what the cache was
                built from); read back with :func:`load_metadata`.

        Returns:
            The path written.
        """
        path = Path(path)
        payload: dict[str, Any] = {
            "format": _FORMAT,
            "images": self.images.contiguous(),
            "targets": self.targets,
            "classes": list(self.classes),
            "subject_ids": self.subject_ids,
            "au_ids": list(self.au_ids),
            "metadata": dict(metadata or {}),
            "subjects_known": self.subjects_known,
            "skipped": [list(item) for item in self.skipped],
        }
        if self.partition is not None:
            payload["partition"] = self.partition
        if self.au_intensities is not None:
            payload["au_intensities"] = self.au_intensities
        if self.valence_arousal is not None:
            payload["valence_arousal"] = self.valence_arousal
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda file: torch.save(payload, file))
        logger.info("saved %d samples to %s", len(self), path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> FaceExpressionDataset:
        """Reads a file written by :meth:`save`.

        Raises:
            FileNotFoundError: If ``path`` does not exist.
            ValueError: If the file is not a saved FaceExpressionDataset.
        """
        payload = _load_payload(path)
        au_intensities = payload.get("au_intensities")
        return cls(
            images=payload["images"],
            targets=payload["targets"],
            classes=payload["classes"],
            subject_ids=payload["subject_ids"],
            au_intensities=au_intensities,
            au_ids=payload["au_ids"] if au_intensities is not None else None,
            valence_arousal=payload.get("valence_arousal"),
            partition=payload.get("partition"),
            subjects_known=payload.get("subjects_known", True),
            skipped=[tuple(item) for item in payload.get("skipped", [])],
        )


def concat_datasets(parts: Sequence[FaceExpressionDataset], shared_subjects: bool = False,
                    classes: Sequence[str] | None = None) -> FaceExpressionDataset:
    """Joins datasets, e.g. RAF-DB's basic and compound sets, into one.

    Args:
        parts: The datasets; their images must share one size.
        shared_subjects: Whether equal subject ids mean the same person in every part (two reads of
            one source). Otherwise each part's ids are shifted past the previous part's, so that
            people of different datasets are never merged.
        classes: The joined dataset's classes, a superset of the parts' (those of no part get no
            image); default: the parts' classes in order of first appearance.

    Returns:
        One dataset, targets remapped onto ``classes``; AU columns united
        (NaN where a part has none); valence/arousal NaN where absent; partition -1 where absent.

    Raises:
        ValueError: If ``parts`` is empty, image sizes differ, or ``classes`` lacks a part's class.
    """
    if not parts:
        raise ValueError("nothing to concatenate")
    known = dict.fromkeys(name for part in parts for name in part.classes)
    classes = tuple(known) if classes is None else tuple(classes)
    missing = [name for name in known if name not in classes]
    if missing:
        raise ValueError(f"classes {list(classes)} lack the parts' class(es) {missing}")
    sizes = {part.image_size for part in parts}
    if len(sizes) > 1:
        raise ValueError(f"cannot join datasets of image sizes {sorted(sizes)}; read them at one data.size")
    au_ids = sorted({au for part in parts for au in part.au_ids})
    targets, subjects, partitions, aus, affect = [], [], [], [], []
    offset = 0
    for part in parts:
        lookup = torch.tensor([classes.index(name) for name in part.classes], dtype=torch.int64)
        targets.append(lookup[part.targets] if len(part) else part.targets)
        subjects.append(part.subject_ids + (0 if shared_subjects else offset))
        if len(part):
            offset = max(offset, int(subjects[-1].max()) + 1)
        partitions.append(part.partition if part.partition is not None else torch.full((len(part),), -1))
        columns = torch.full((len(part), len(au_ids)), float("nan"))
        for column, au in enumerate(au_ids):
            if au in part.au_ids and part.au_intensities is not None:
                columns[:, column] = part.au_intensities[:, part.au_ids.index(au)]
        aus.append(columns)
        affect.append(part.valence_arousal if part.valence_arousal is not None
                      else torch.full((len(part), 2), float("nan")))
    return FaceExpressionDataset(
        images=torch.cat([part.images for part in parts]),
        targets=torch.cat(targets),
        classes=classes,
        subject_ids=torch.cat(subjects),
        au_intensities=torch.cat(aus) if au_ids else None,
        au_ids=au_ids or None,
        valence_arousal=torch.cat(affect) if any(p.valence_arousal is not None for p in parts) else None,
        partition=torch.cat(partitions) if any(p.partition is not None for p in parts) else None,
        subjects_known=all(part.subjects_known for part in parts),
        skipped=[item for part in parts for item in part.skipped],
    )


def load_metadata(path: str | Path) -> dict[str, Any]:
    """Returns the ``metadata`` stored by :meth:`FaceExpressionDataset.save`.

    Memory-maps the file, so checking a large cache does not read its images.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a saved FaceExpressionDataset.
    """
    return dict(_load_payload(path, mmap=True)["metadata"])


def _load_payload(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no saved dataset at {path}")
    payload = load_torch_file(path, "it is not a readable FaceExpressionDataset file: delete it to rebuild the cache",
                              mmap=mmap, map_location="cpu")
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(
            f"{path} is not a FaceExpressionDataset file of format {_FORMAT!r} "
            f"(found {found!r}); delete it to rebuild the cache"
        )
    return payload


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"tensor of dtype {value.dtype} and shape {tuple(value.shape)}"
    return type(value).__name__


def _integer_vector(name: str, value: object, n_samples: int) -> Tensor:
    if (
        not isinstance(value, Tensor)
        or value.dtype == torch.bool
        or value.is_floating_point()
        or value.is_complex()
    ):
        raise ValueError(f"{name} must be an integer tensor, got {_describe(value)}")
    if tuple(value.shape) != (n_samples,):
        raise ValueError(
            f"{name} must have shape ({n_samples},) to match images, got {tuple(value.shape)}"
        )
    return value.to(torch.int64)


def _float_matrix(name: str, value: object, n_samples: int, n_columns: int) -> Tensor:
    if not isinstance(value, Tensor) or not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {_describe(value)}")
    if tuple(value.shape) != (n_samples, n_columns):
        raise ValueError(
            f"{name} must have shape ({n_samples}, {n_columns}), got {tuple(value.shape)}"
        )
    return value.to(torch.float32)


def _as_index_tensor(indices: Indices, n_samples: int) -> Tensor:
    index = torch.as_tensor(np.asarray(indices) if not isinstance(indices, Tensor) else indices)
    if index.dtype == torch.bool:
        if tuple(index.shape) != (n_samples,):
            raise IndexError(
                f"a boolean mask must have shape ({n_samples},), got {tuple(index.shape)}"
            )
        return torch.nonzero(index).flatten()
    if index.numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    if index.dim() != 1 or index.is_floating_point():
        raise IndexError(
            f"indices must be a 1-D sequence of ints, got {_describe(index)}"
        )
    index = index.to(torch.int64)
    out_of_range = (index < -n_samples) | (index >= n_samples)
    if out_of_range.any():
        raise IndexError(
            f"indices {index[out_of_range][:5].tolist()} out of range for {n_samples} samples"
        )
    return index
