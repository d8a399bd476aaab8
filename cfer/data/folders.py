"""Readers of a user's own images: a folder per class, or a CSV manifest.

**Folder per class**: ``root/<class>/*.jpg``, or with an official split
``root/{train,test,val}/<class>/*.jpg`` (FER2013's layout). Folder names are category names or
aliases in any case (``happiness``, ``Happy``, ``happily surprised``; :data:`cfer.taxonomy.ALIASES`);
an unknown folder name is an error that lists the valid names. There are no subject ids.

**CSV manifest**: one row per image, columns ``path,label`` and optionally ``subject``,
``valence,arousal``, ``partition`` (``train``/``test``/``val``) and ``AU<nn>`` intensities.
``category`` and ``subject_id`` are accepted for ``label`` and ``subject`` (so the manifest.csv of
``cfer synth --out`` and ``write_cfee`` reads as it is). Paths are relative to the CSV's folder
unless absolute. Subjects may be numbers or names (``S012``); names are numbered in order of first
appearance.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

from cfer.data.dataset import FaceExpressionDataset
from cfer.data.images import display_path, is_image_file
from cfer.data.reading import PARTITIONS, ImageEntry, ReadOptions, SkipLog, read_entries
from cfer.taxonomy import ALIASES, CATEGORY_NAMES, get_category

__all__ = ["MANIFEST_COLUMNS", "folder_entries", "manifest_entries", "read_folder", "read_manifest_csv"]

_SPLIT_FOLDERS = {"train": "train", "training": "train", "test": "test", "testing": "test", "val": "val",
                  "valid": "val", "validation": "val"}
MANIFEST_COLUMNS = ("path", "label", "subject", "valence", "arousal", "partition", "AU<nn>")
_COLUMN_ALIASES = {"category": "label", "subject_id": "subject", "split": "partition"}


def read_folder(root: str | Path, categories: Sequence[str], options: ReadOptions) -> FaceExpressionDataset:
    """Reads a folder-per-class tree (optionally under ``train/``, ``test/``, ``val/``).

    Raises:
        FileNotFoundError: If ``root`` is missing or holds no class folder.
        ValueError: If a folder name is not a category name or alias.
    """
    root = Path(root)
    skips = SkipLog(options.on_bad_file)
    entries = folder_entries(root, skips)
    names = tuple(get_category(name).name for name in categories)
    return read_entries(entries, names, root, "folder", options, skips)


def folder_entries(root: Path, skips: SkipLog) -> list[ImageEntry]:
    """The images of each class folder; empty folders and non-image files are recorded in ``skips``."""
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {display_path(root)} does not exist or is not a folder")
    folders = sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not folders:
        raise FileNotFoundError(f"no class folder in {display_path(root)}: expected the layout <root>/<class>/"
                                "<image>.jpg (e.g. <root>/happy/0001.jpg), or <root>/<train|test>/<class>/...")
    if all(folder.name.lower() in _SPLIT_FOLDERS for folder in folders):
        pairs = [(_SPLIT_FOLDERS[split.name.lower()], folder) for split in folders for folder in
                 sorted(p for p in split.iterdir() if p.is_dir() and not p.name.startswith("."))]
    else:
        pairs = [(None, folder) for folder in folders]
    entries = []
    for partition, folder in pairs:
        category = _folder_category(folder)
        files = sorted(path for path in folder.iterdir() if path.is_file() and not path.name.startswith("."))
        images = [path for path in files if is_image_file(path)]
        for path in files:
            if path not in images:
                skips.add(path, "not an image file name (expected .jpg, .jpeg, .png, .bmp, .webp or .tif)")
        if not images:
            skips.note(folder, f"empty class folder: no image of {category}")
        entries += [ImageEntry(path, category, partition=partition, origin=f"folder {display_path(folder.name)}")
                    for path in images]
    return entries


def _folder_category(folder: Path) -> str:
    try:
        return get_category(folder.name).name
    except KeyError:
        raise ValueError(
            f"folder {display_path(folder)} is not a category: rename it to one of {', '.join(CATEGORY_NAMES)} "
            f"(aliases: {', '.join(sorted(set(ALIASES) - set(CATEGORY_NAMES)))}; any case, spaces or hyphens)"
        ) from None


def read_manifest_csv(path: str | Path, categories: Sequence[str], options: ReadOptions) -> FaceExpressionDataset:
    """Reads the images listed by a CSV manifest.

    Raises:
        FileNotFoundError: If the CSV is missing.
        ValueError: If it is not UTF-8 or lacks the ``path`` or ``label`` column.
    """
    path = Path(path)
    skips = SkipLog(options.on_bad_file)
    entries = manifest_entries(path, skips)
    names = tuple(get_category(name).name for name in categories)
    return read_entries(entries, names, path.parent, f"csv-{path.stem}", options, skips)


def manifest_entries(path: Path, skips: SkipLog) -> list[ImageEntry]:
    """The rows of a CSV manifest as entries; rows with a bad label or value go to ``skips``."""
    if not path.is_file():
        raise FileNotFoundError(f"CSV manifest {display_path(path)} does not exist; pass the .csv file with --root")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{display_path(path)} is not UTF-8 text ({error}); save it as UTF-8 CSV") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = {(_COLUMN_ALIASES.get(c.strip().lower(), c.strip().lower()) if not c.strip().upper().startswith("AU")
                else c.strip().upper()): c for c in reader.fieldnames or []}
    if "path" not in columns or "label" not in columns:
        raise ValueError(f"{display_path(path)} must have the columns 'path' and 'label' (optional: "
                         f"{', '.join(MANIFEST_COLUMNS[2:])}); found {list(reader.fieldnames or [])}")
    subjects: dict[str, int] = {}
    entries = []
    for line_number, row in enumerate(reader, start=2):
        origin = f"{path.name} line {line_number}"
        try:
            entries.append(_manifest_entry(path.parent, row, columns, subjects, origin))
        except ValueError as error:
            skips.add(path, str(error), origin)
    return entries


def _manifest_entry(folder: Path, row: dict[str, str], columns: dict[str, str], subjects: dict[str, int],
                    origin: str) -> ImageEntry:
    def cell(name: str) -> str:
        return (row.get(columns[name]) or "").strip() if name in columns else ""

    try:
        category = get_category(cell("label")).name
    except KeyError:
        raise ValueError(f"unknown label {cell('label')!r}; use a category name such as happy or "
                         "happily_surprised (see cfer.taxonomy)") from None
    subject = None
    if cell("subject"):
        text = cell("subject")
        subject = int(text) if text.isdigit() else subjects.setdefault(text, 1_000_000 + len(subjects))
    partition = cell("partition").lower() or None
    if partition is not None:
        partition = _SPLIT_FOLDERS.get(partition)
        if partition not in PARTITIONS:
            raise ValueError(f"partition {cell('partition')!r} is not train, test or val")
    affect = None
    if cell("valence") or cell("arousal"):
        affect = (_number(cell("valence"), "valence"), _number(cell("arousal"), "arousal"))
    aus = {int(name[2:]): _number(cell(name), name) for name in columns if name[:2] == "AU" and name[2:].isdigit()}
    image = Path(cell("path"))
    return ImageEntry(image if image.is_absolute() else folder / image, category, subject=subject,
                      partition=partition, valence_arousal=affect, aus=aus or None, origin=origin)


def _number(text: str, column: str) -> float:
    if not text:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{column} {text!r} is not a number") from None
