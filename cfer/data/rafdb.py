"""Reader of RAF-DB (Real-world Affective Faces; Li, Deng & Du, CVPR 2017), basic and compound sets.

RAF-DB is distributed on request (whdeng.cn/RAF/model1.html). Its README and the public code that
reads it (kaiwang960112/Self-Cure-Network ``src/train.py``: ``EmoLabel/list_patition_label.txt`` read
space-separated, the split by ``startswith("train")``, aligned names ``<stem>_aligned.jpg``, labels
"0:Surprise, 1:Fear, 2:Disgust, 3:Happiness, 4:Sadness, 5:Anger, 6:Neutral" after subtracting 1;
EllaVan/AU_EMOwPGM ``materials/data_process/RAF_compound_data_process_subject_independent.py``: the
same file and format under ``compound/`` and the 11 compound names in order) give the layout::

    RAF-DB/
        basic/
            EmoLabel/list_patition_label.txt    "train_00001.jpg 5", one image a line (sic: "patition")
            Image/aligned/train_00001_aligned.jpg     100 x 100 aligned faces
            Image/original/train_00001.jpg            the original photos
        compound/
            EmoLabel/list_patition_label.txt    "train_0001.jpg 3"
            Image/aligned/train_0001_aligned.jpg
            Image/original/train_0001.jpg

The file-name prefix is the official partition (``train_`` or ``test_``); there are no subject ids.
Labels follow :data:`cfer.taxonomy.RAFDB_BASIC` (1 surprise, 2 fear, 3 disgust, 4 happiness,
5 sadness, 6 anger, 7 neutral) and :data:`cfer.taxonomy.RAFDB_COMPOUND` (1 happily surprised ...
11 disgustedly surprised); see :mod:`cfer.taxonomy` for the sources of both orders.

``root`` may be the ``RAF-DB`` folder holding ``basic/`` and/or ``compound/`` (each requested
category is read from the set that has it), or one of those two folders itself.

RAF-CE (RAF Compound Expression; whdeng.cn/RAF/model4.html) is 4549 images of RAF-ML, aligned as
RAF-AU, with three label files of ``<name> <value>`` lines and no header: ``RAFCE_emolabel.txt``
(0-based, :data:`cfer.taxonomy.RAFCE_CLASSES`), ``RAFCE_partition.txt`` (0 train, 1 test,
2 validation) and ``RAFCE_AUlabel.txt`` (``1+4+25``, side-prefixed ``L12+R24``, or ``null``). The
layout read here, established from public code that reads it (medmaamar1/emotion-recognition-ai,
``config.py`` and ``scripts/dataset.py``: partition 0 train, 1 test, 2 validation; aligned images
``<stem>_aligned.jpg``), since no official tree is public::

    RAF-CE/
        RAFCE_emolabel.txt  RAFCE_partition.txt  RAFCE_AUlabel.txt
        aligned/0001_aligned.jpg        (or original/0001.jpg, --set data.variant=original)

Its classes 12 (happily fearful) and 13 (happily sad) are not CFEE categories; their images are
skipped and recorded.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from cfer.data.dataset import FaceExpressionDataset, concat_datasets
from cfer.data.images import display_path
from cfer.data.reading import ImageEntry, ReadOptions, SkipLog, read_entries
from cfer.taxonomy import (
    RAFCE_CLASSES,
    RAFCE_OUTSIDE_TAXONOMY,
    RAFDB_BASIC,
    RAFDB_COMPOUND,
    get_category,
)

__all__ = ["RAFDB_LABEL_FILES", "RAFDB_VARIANTS", "rafce_entries", "rafdb_entries", "read_rafce", "read_rafdb"]

logger = logging.getLogger(__name__)

RAFDB_VARIANTS: tuple[str, ...] = ("aligned", "original")
RAFDB_LABEL_FILES: tuple[str, ...] = ("list_patition_label.txt", "list_partition_label.txt")
_LABELS = {"basic": RAFDB_BASIC, "compound": RAFDB_COMPOUND}
_NAME = re.compile(r"^(?P<partition>train|test)_(?P<number>\d+)\.(?:jpg|jpeg|png)$", re.IGNORECASE)
_EXPECTED = "<root>/{basic,compound}/EmoLabel/list_patition_label.txt and <root>/<set>/Image/<aligned|original>/"


def read_rafdb(
    root: str | Path,
    categories: Sequence[str],
    options: ReadOptions,
    variant: str = "aligned",
) -> FaceExpressionDataset:
    """Reads the RAF-DB images of ``categories`` from its basic and/or compound set.

    Args:
        root: The RAF-DB folder, or its ``basic`` or ``compound`` folder.
        categories: Category names, in output order; each is read from the set that labels it
            (neutral and the six basic ones from ``basic``, the 11 compounds from ``compound``).
        options: Size, bad-file handling and cache (see :class:`cfer.data.reading.ReadOptions`).
        variant: ``aligned`` (the 100 x 100 aligned faces) or ``original``.

    Returns:
        The dataset, with the official partition, ``subjects_known`` False, and the requested
        categories that RAF-DB lacks (e.g. ``awed``) present with no image.

    Raises:
        FileNotFoundError: If the root is missing or holds neither set in the RAF-DB layout.
        ValueError: If ``variant`` is unknown, or a bad label line or file under ``on_bad_file="error"``.
    """
    if variant not in RAFDB_VARIANTS:
        raise ValueError(f"unknown RAF-DB variant {variant!r}; valid variants are {list(RAFDB_VARIANTS)} "
                         "(--set data.variant=original)")
    sets = _find_sets(Path(root))
    names = tuple(get_category(name).name for name in categories)
    parts = []
    for subset, folder in sets.items():
        wanted = [name for name in names if name in _LABELS[subset].values()]
        if not wanted:
            continue
        skips = SkipLog(options.on_bad_file)
        entries = rafdb_entries(folder, subset, variant, skips)
        parts.append(read_entries(entries, wanted, folder, f"rafdb-{subset}-{variant}", options, skips))
    if not parts:
        raise FileNotFoundError(f"none of {list(names)} is labelled in the RAF-DB set(s) {sorted(sets)} found "
                                f"under {display_path(root)}")
    return concat_datasets(parts, classes=names)


def rafdb_entries(folder: Path, subset: str, variant: str, skips: SkipLog) -> list[ImageEntry]:
    """The entries of one RAF-DB set's label file; bad lines go to ``skips``.

    Args:
        folder: The set's folder (holding ``EmoLabel`` and ``Image``).
        subset: ``basic`` or ``compound`` (which label order applies).
        variant: ``aligned`` or ``original``.
        skips: Where bad lines are recorded (or raised).
    """
    label_file = _label_file(folder)
    images = folder / "Image" / variant
    if not images.is_dir():
        raise FileNotFoundError(f"no {display_path(images)}: RAF-DB's {variant} images are expected there "
                                f"({_EXPECTED}); pass --set data.variant=" + ("original" if variant == "aligned"
                                                                              else "aligned") + " if you have those")
    labels = _LABELS[subset]
    entries = []
    text = label_file.read_bytes().decode("utf-8", errors="replace")
    for line_number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        origin = f"{label_file.name} line {line_number}"
        parsed = _parse_line(fields, labels, subset)
        if isinstance(parsed, str):
            skips.add(label_file, parsed, origin)
            continue
        name, partition, category = parsed
        stem, suffix = name.rsplit(".", 1)
        file_name = f"{stem}_aligned.{suffix}" if variant == "aligned" else name
        entries.append(ImageEntry(images / file_name, category, partition=partition, origin=origin))
    return entries


def _parse_line(fields: list[str], labels: dict[int, str], subset: str) -> tuple[str, str, str] | str:
    """``(file name, partition, category)`` of a label line, or why it is bad."""
    if len(fields) != 2 or not fields[1].isdigit():
        return f"expected '<name>.jpg <label>', got {' '.join(fields)!r}"
    name, label = fields[0], int(fields[1])
    match = _NAME.match(name)
    if match is None:
        return f"{name!r} has no train_/test_ prefix (the official partition), e.g. train_00001.jpg"
    if label not in labels:
        return f"unknown {subset} label {label}; valid labels are " + ", ".join(f"{k}={v}" for k, v in labels.items())
    return name, match["partition"].lower(), labels[label]


def _find_sets(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        raise FileNotFoundError(f"RAF-DB root {display_path(root)} does not exist or is not a folder; pass the "
                                "unzipped RAF-DB folder (holding basic/ and compound/) with --root")
    if (root / "EmoLabel").is_dir():
        subset = "compound" if root.name.lower().startswith("compound") else "basic"
        return {subset: root}
    sets = {subset: root / subset for subset in _LABELS if (root / subset / "EmoLabel").is_dir()}
    if not sets:
        raise FileNotFoundError(f"no RAF-DB set under {display_path(root)}: expected the layout {_EXPECTED}")
    return sets


def _label_file(folder: Path) -> Path:
    for name in RAFDB_LABEL_FILES:
        if (folder / "EmoLabel" / name).is_file():
            return folder / "EmoLabel" / name
    found = sorted(path.name for path in (folder / "EmoLabel").iterdir())
    raise FileNotFoundError(f"no label file {RAFDB_LABEL_FILES[0]} in {display_path(folder / 'EmoLabel')} "
                            f"(found {found}); expected the layout {_EXPECTED}")


# --- RAF-CE ----------------------------------------------------------------------------------------

_RAFCE_FILES = {"emotion": "RAFCE_emolabel.txt", "partition": "RAFCE_partition.txt", "aus": "RAFCE_AUlabel.txt"}
_RAFCE_PARTITIONS = {0: "train", 1: "test", 2: "val"}
_AU_TOKEN = re.compile(r"^[LRBTA-Z]*?(?P<number>\d+)[A-Z]*$")


def read_rafce(root: str | Path, categories: Sequence[str], options: ReadOptions,
               variant: str = "aligned") -> FaceExpressionDataset:
    """Reads RAF-CE: its 12 compound classes that are CFEE categories, the partition and AU labels.

    Args:
        root: The RAF-CE folder (holding the three ``RAFCE_*.txt`` files and ``aligned/``).
        categories: Category names, in output order.
        options: Size, bad-file handling and cache.
        variant: ``aligned`` or ``original``.

    Returns:
        The dataset, with the official partition (train, test and validation), AU presence (1.0 for
        each AU listed, 0.0 for the others), and ``subjects_known`` False.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"RAF-CE root {display_path(root)} does not exist or is not a folder")
    if variant not in RAFDB_VARIANTS:
        raise ValueError(f"unknown RAF-CE variant {variant!r}; valid variants are {list(RAFDB_VARIANTS)}")
    skips = SkipLog(options.on_bad_file)
    entries = rafce_entries(root, variant, skips)
    names = tuple(get_category(name).name for name in categories)
    return read_entries(entries, names, root, f"rafce-{variant}", options, skips)


def rafce_entries(root: Path, variant: str, skips: SkipLog) -> list[ImageEntry]:
    """The entries of RAF-CE's three label files; bad lines and out-of-taxonomy classes go to ``skips``."""
    tables = {key: _read_pairs(root, name, skips) for key, name in _RAFCE_FILES.items() if key != "aus"}
    aus = _read_pairs(root, _RAFCE_FILES["aus"], skips) if (root / _RAFCE_FILES["aus"]).is_file() else {}
    images = root / variant
    if not images.is_dir():
        raise FileNotFoundError(f"no {display_path(images)}: RAF-CE's {variant} images are expected there "
                                f"(<root>/aligned/0001_aligned.jpg or <root>/original/0001.jpg)")
    au_numbers = sorted({number for value, _ in aus.values() for number in _parse_aus(value)})
    entries = []
    for name, (label, origin) in tables["emotion"].items():
        partition = tables["partition"].get(name)
        problem = _rafce_problem(label, partition[0] if partition else None)
        if problem:
            skips.add(images / name, problem, origin)
            continue
        listed = _parse_aus(aus[name][0]) if name in aus else None
        file_name = name.replace(".jpg", "_aligned.jpg") if variant == "aligned" else name
        entries.append(ImageEntry(
            images / file_name, RAFCE_CLASSES[int(label)],  # type: ignore[arg-type]  # checked
            partition=_RAFCE_PARTITIONS[int(partition[0])],  # type: ignore[index]
            aus=None if listed is None else {number: float(number in listed) for number in au_numbers},
            origin=origin,
        ))
    return entries


def _rafce_problem(label: str, partition: str | None) -> str | None:
    if not label.isdigit() or int(label) not in RAFCE_CLASSES:
        return f"unknown RAF-CE label {label!r}; valid labels are 0-13"
    if RAFCE_CLASSES[int(label)] is None:
        return f"RAF-CE class {label} ({RAFCE_OUTSIDE_TAXONOMY[int(label)]}) is not a CFEE category"
    if partition is None or not partition.isdigit() or int(partition) not in _RAFCE_PARTITIONS:
        return f"no valid partition (0, 1 or 2) in {_RAFCE_FILES['partition']}"
    return None


def _read_pairs(root: Path, name: str, skips: SkipLog) -> dict[str, tuple[str, str]]:
    """``file name -> (value, where)`` of a ``<name> <value>`` file; repeats and bad lines go to ``skips``."""
    path = root / name
    if not path.is_file():
        raise FileNotFoundError(f"no {name} in {display_path(root)}: RAF-CE's label files are expected at its root "
                                f"({', '.join(_RAFCE_FILES.values())})")
    pairs: dict[str, tuple[str, str]] = {}
    for line_number, line in enumerate(path.read_bytes().decode("utf-8", errors="replace").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        origin = f"{name} line {line_number}"
        if len(fields) != 2:
            skips.add(path, f"expected '<name>.jpg <value>', got {line.strip()!r}", origin)
        elif fields[0] in pairs:
            skips.add(root / fields[0], f"duplicate entry ({origin}; first listed {pairs[fields[0]][1]})")
        else:
            pairs[fields[0]] = (fields[1], origin)
    return pairs


def _parse_aus(value: str) -> set[int]:
    """AU numbers of a RAF-CE AU label (``1+4+25``, ``L12+R24``, ``null``); side prefixes are dropped."""
    if value.lower() == "null":
        return set()
    numbers = set()
    for token in value.split("+"):
        match = _AU_TOKEN.match(token.strip().upper())
        if match is not None:
            numbers.add(int(match["number"]))
    return numbers
