"""From a list of labelled image files to an in-memory dataset: decoding, skips and the cache.

Every reader of a real dataset (RAF-DB, RAF-CE, folders, CSV manifests) lists its files as
:class:`ImageEntry` rows and hands them to :func:`read_entries`, which

* drops duplicate entries (the same file listed twice) and entries whose file is missing;
* decodes every image once (:func:`cfer.data.images.decode_image`), in threads;
* handles every bad file the same way (:class:`SkipLog`): with ``on_bad_file="skip"`` (the default)
  it is left out and recorded, with ``"error"`` the read stops with a message naming the file;
* caches the decoded images in ``cache_dir``, in a file keyed by the dataset's root and a
  fingerprint of its file list (paths, sizes, modification times), so that another root or a
  changed folder is never served a stale cache.

A recorded skip is one warning line with the count, ``skipped.csv`` (``path,reason``) in the cache
directory, and the dataset's ``skipped`` attribute, which each command writes to its run directory
(:func:`write_skipped`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from cfer.data.dataset import FaceExpressionDataset, load_metadata
from cfer.data.images import (
    DEFAULT_MAX_PIXELS,
    BadImageError,
    decode_image,
    display_path,
)
from cfer.io import atomic_write_bytes

__all__ = [
    "SKIPPED_NAME",
    "ImageEntry",
    "OnBadFile",
    "ReadOptions",
    "SkipLog",
    "cache_path",
    "load_cache",
    "decode_files",
    "read_entries",
    "write_skipped",
]

logger = logging.getLogger(__name__)

SKIPPED_NAME = "skipped.csv"
OnBadFile = Literal["skip", "error"]
PARTITIONS: tuple[str, ...] = ("train", "test", "val")


class BadInputError(ValueError):
    """Raised by :class:`SkipLog` under ``on_bad_file="error"``."""


@dataclass(frozen=True)
class ImageEntry:
    """One labelled image file of a dataset.

    Attributes:
        path: The file.
        category: Canonical category name (:mod:`cfer.taxonomy`).
        subject: Identity of the person, or None when the dataset has no subject ids.
        partition: The dataset's official split, ``"train"``, ``"test"`` or ``"val"``, or None.
        valence_arousal: ``(valence, arousal)`` or None.
        aus: Action-unit intensities by FACS number, or None.
        origin: Where the entry was listed (e.g. ``"list_patition_label.txt line 7"``), for messages.
    """

    path: Path
    category: str
    subject: int | None = None
    partition: str | None = None
    valence_arousal: tuple[float, float] | None = None
    aus: Mapping[int, float] | None = None
    origin: str = ""


@dataclass(frozen=True)
class ReadOptions:
    """How files are decoded and what a bad one does; shared by every real-data reader."""

    size: int | None = 64  # side of the square images; None keeps the original size (all must agree)
    on_bad_file: OnBadFile = "skip"  # "skip": leave it out and record it; "error": stop
    cache_dir: str | Path | None = None  # where decoded images (and skipped.csv) are kept
    max_image_pixels: int = DEFAULT_MAX_PIXELS  # larger images are refused (JPEGs count at reduced size)
    num_workers: int | None = None  # decoding threads; default min(8, cpu count)


@dataclass
class SkipLog:
    """The bad inputs of one read: each is recorded, or raised under ``on_bad_file="error"``.

    Args:
        on_bad_file: ``"skip"`` or ``"error"``.
    """

    on_bad_file: OnBadFile = "skip"
    items: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.on_bad_file not in ("skip", "error"):
            raise ValueError(f"data.on_bad_file must be 'skip' or 'error', got {self.on_bad_file!r}")

    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, path: str | Path, reason: str, origin: str = "") -> None:
        """Records a skip of ``path`` (listed at ``origin``, e.g. a label file's line), or raises under "error"."""
        shown = display_path(path)
        where = f"{origin}: " if origin else ""
        if self.on_bad_file == "error":
            raise BadInputError(f"{shown}: {where}{reason} (data.on_bad_file=error; remove or fix the file, or "
                                "--set data.on_bad_file=skip to leave such files out)")
        self.items.append((shown, where + reason))
        self.kinds[reason.split(" (")[0].split(";")[0]] += 1

    def note(self, path: str | Path, reason: str) -> None:
        """Records something left out that is not a bad file (an empty class folder), whatever ``on_bad_file``."""
        self.items.append((display_path(path), reason))
        self.kinds[reason.split(":")[0]] += 1

    def warn(self, what: str, total: int) -> None:
        """One warning line with the count of skipped entries and the commonest reasons."""
        if not self.items:
            return
        common = ", ".join(f"{count} {reason}" for reason, count in self.kinds.most_common(3))
        logger.warning("skipped %d of %d file(s) of %s (%s); they are listed in %s", len(self.items), total, what,
                       common, SKIPPED_NAME)


def write_skipped(items: Iterable[tuple[str, str]], directory: str | Path) -> Path | None:
    """Writes ``directory/skipped.csv`` (``path,reason``) when there is anything to write.

    Returns:
        The file written, or None when nothing was skipped.
    """
    rows = list(items)
    if not rows:
        return None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "reason"])
    writer.writerows(rows)
    path = Path(directory) / SKIPPED_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
    return path


def read_entries(
    entries: Sequence[ImageEntry],
    classes: Sequence[str],
    root: str | Path,
    source: str,
    options: ReadOptions,
    skips: SkipLog | None = None,
) -> FaceExpressionDataset:
    """Decodes the entries of ``classes`` into a dataset, skipping (or stopping at) bad files.

    Args:
        entries: The listed files; those of other categories are ignored.
        classes: Category names, in output order.
        root: The dataset's root folder (part of the cache key).
        source: The source's name (part of the cache key and file name).
        options: Decoding, bad-file and cache settings.
        skips: Where earlier bad inputs of this read (bad label lines) were recorded; new ones are added.

    Returns:
        The dataset, with ``subjects_known`` False (and one id per image) when no entry has a
        subject, ``partition`` when every entry has one, and ``skipped`` listing what was left out.

    Raises:
        FileNotFoundError: If no usable image remains.
        ValueError: Under ``on_bad_file="error"``, at the first bad input.
    """
    skips = skips if skips is not None else SkipLog(options.on_bad_file)
    classes = tuple(classes)
    wanted = _unique_existing([entry for entry in entries if entry.category in classes], skips)
    metadata = _cache_metadata(wanted, classes, root, source, options)
    cache = cache_path(options.cache_dir, source, root, options.size)
    if cache is not None:
        cached = load_cache(cache, metadata)
        if cached is not None:
            return cached
    images, kept = decode_files([entry.path for entry in wanted], options, skips)
    wanted = [entry for entry, ok in zip(wanted, kept) if ok]
    if not wanted:
        raise FileNotFoundError(f"no usable image of classes {list(classes)} under {display_path(root)} "
                                f"({len(skips.items)} skipped; see the warnings above)")
    dataset = _assemble(images, wanted, classes, skips)
    skips.warn(f"{source} at {display_path(root)}", len(wanted) + len(skips.items))
    empty = [name for name, count in dataset.class_counts().items() if count == 0]
    if empty:
        logger.warning("%s at %s has no image of class(es) %s", source, display_path(root), empty)
    if cache is not None:
        dataset.save(cache, metadata=metadata)
        write_skipped(skips.items, cache.parent)
    logger.info("read %s from %s", dataset, display_path(root))
    return dataset


def _unique_existing(entries: Sequence[ImageEntry], skips: SkipLog) -> list[ImageEntry]:
    """Drops (and records) entries whose file is missing, and repeats of a file already listed."""
    seen: dict[Path, ImageEntry] = {}
    for entry in entries:
        if entry.path in seen:
            first = seen[entry.path]
            same = first.category == entry.category
            skips.add(entry.path, f"duplicate entry ({entry.origin or 'listed again'}; first listed "
                      f"{first.origin or 'earlier'}{'' if same else f' as {first.category}, here as {entry.category}'})")
            continue
        if not entry.path.is_file():
            skips.add(entry.path, f"file is missing (listed at {entry.origin or 'the label file'})")
            continue
        seen[entry.path] = entry
    return list(seen.values())


def decode_files(paths: Sequence[Path], options: ReadOptions, skips: SkipLog) -> tuple[torch.Tensor, list[bool]]:
    """Decodes ``paths`` in threads, recording bad files in ``skips``.

    Returns:
        The good files' images, uint8 (M, 3, H, W), and whether each path was kept, length N.
    """
    def decode(path: Path) -> np.ndarray | BadImageError:
        try:
            return decode_image(path, options.size, options.max_image_pixels)
        except BadImageError as error:
            return error

    workers = options.num_workers or min(8, os.cpu_count() or 1)
    kept: list[bool] = []
    arrays: list[np.ndarray] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for path, result in zip(paths, pool.map(decode, paths)):
            if isinstance(result, BadImageError):
                skips.add(path, result.reason)
            elif arrays and result.shape != arrays[0].shape:
                skips.add(path, f"{result.shape[1]}x{result.shape[0]} pixels, unlike the first image's "
                          f"{arrays[0].shape[1]}x{arrays[0].shape[0]} (set data.size to resize every image)")
                result = None
            if isinstance(result, np.ndarray):
                arrays.append(result)
            kept.append(isinstance(result, np.ndarray))
    if not arrays:
        return torch.zeros((0, 3, 1, 1), dtype=torch.uint8), kept
    images = torch.empty((len(arrays), 3, *arrays[0].shape[:2]), dtype=torch.uint8)
    for index, pixels in enumerate(arrays):
        images[index] = torch.from_numpy(pixels).permute(2, 0, 1)
    return images, kept


def _assemble(images: torch.Tensor, entries: Sequence[ImageEntry], classes: tuple[str, ...],
              skips: SkipLog) -> FaceExpressionDataset:
    """The dataset of decoded ``images`` and their entries' targets."""
    subjects_known = any(entry.subject is not None for entry in entries)
    if subjects_known and any(entry.subject is None for entry in entries):
        missing = next(entry for entry in entries if entry.subject is None)
        raise ValueError(f"{display_path(missing.path)} has no subject id while other images have one; give "
                         "every image a subject, or none")
    with_partition = [entry.partition is not None for entry in entries]
    partition = None
    if any(with_partition):
        partition = torch.tensor([PARTITIONS.index(entry.partition) if entry.partition else -1 for entry in entries])
    au_ids = sorted({au for entry in entries if entry.aus for au in entry.aus})
    aus = None
    if au_ids:
        aus = torch.tensor([[(entry.aus or {}).get(au, math.nan) for au in au_ids] for entry in entries],
                           dtype=torch.float32)
    affect = None
    if any(entry.valence_arousal is not None for entry in entries):
        affect = torch.tensor([entry.valence_arousal or (math.nan, math.nan) for entry in entries],
                              dtype=torch.float32)
    return FaceExpressionDataset(
        images=images,
        targets=torch.tensor([classes.index(entry.category) for entry in entries], dtype=torch.int64),
        classes=classes,
        subject_ids=torch.tensor([entry.subject for entry in entries] if subjects_known else range(len(entries)),
                                 dtype=torch.int64),
        au_intensities=aus,
        au_ids=au_ids or None,
        valence_arousal=affect,
        partition=partition,
        subjects_known=subjects_known,
        skipped=tuple(skips.items),
    )


# --- the cache ---------------------------------------------------------------------------------


def cache_path(cache_dir: str | Path | None, source: str, root: str | Path, size: int | None) -> Path | None:
    """The cache file of one source's images at one size, keyed by the root's absolute path; None without a folder."""
    if cache_dir is None:
        return None
    key = hashlib.sha256(os.fsencode(Path(root).resolve())).hexdigest()[:12]
    return Path(cache_dir) / f"{source}-{key}-{size or 'full'}px.pt"


def _cache_metadata(entries: Sequence[ImageEntry], classes: tuple[str, ...], root: str | Path, source: str,
                    options: ReadOptions) -> dict[str, Any]:
    """What the decoded images depend on: the root, every file and its targets, and the decoding settings."""
    digest = hashlib.sha256()
    for entry in entries:
        stat = entry.path.stat()
        aus = sorted((entry.aus or {}).items())
        digest.update(os.fsencode(entry.path) + f"\0{stat.st_size}\0{stat.st_mtime_ns}\0{entry.category}\0"
                      f"{entry.subject}\0{entry.partition}\0{entry.valence_arousal}\0{aus}\n".encode())
    return {
        "source": source,
        "root": display_path(Path(root).resolve()),
        "classes": list(classes),
        "size": options.size,
        "max_image_pixels": options.max_image_pixels,
        "on_bad_file": options.on_bad_file,
        "fingerprint": digest.hexdigest(),
    }


def load_cache(path: Path, metadata: Mapping[str, Any]) -> FaceExpressionDataset | None:
    """The dataset saved at ``path`` if it was built with exactly ``metadata``; else None (it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        stored = load_metadata(path)
    except ValueError as error:
        logger.warning("ignoring unreadable cache %s: %s", path, error)
        return None
    if stored != dict(metadata):
        changed = sorted(key for key in set(stored) | set(metadata) if stored.get(key) != metadata.get(key))
        logger.info("cache %s is stale (%s differ); rebuilding", path, ", ".join(changed))
        return None
    dataset = FaceExpressionDataset.load(path)
    logger.info("loaded %s from cache %s", dataset, path)
    if dataset.skipped:
        logger.warning("%d file(s) were skipped when this cache was built; they are listed in %s",
                       len(dataset.skipped), path.parent / SKIPPED_NAME)
    return dataset
