"""Reader and writer of the CFEE_Database_230 folder layout.

CFEE (Compound Facial Expressions of Emotion; Du, Tao & Martinez 2014, PNAS
111(15):E1454) is distributed on request from cbcsl.ece.ohio-state.edu/compound.html
as a folder ``CFEE_Database_230``. No official description of its layout is
public; the layout below is reconstructed from public code that reads it:

* github.com/AngusMaiden/complex-FER (Maiden & Nakisa 2023), ``src/complex_FER.py``
  and ``src/data/process.py``: images are globbed as
  ``CFEE_Database_230/*/Images*/*.jpg``; the emotion is the file name's
  characters ``[0:2]`` (a two-digit number, matched against the ``(id, name)``
  rows of the ``summary`` sheet of ``AU_annotation_all_subjects.xls`` at the
  dataset root) and the subject is characters ``[3:6]`` (three digits).
* github.com/xiaohanghu/2CET-GAN, ``dataset/CFEE.py`` and
  ``dataset/FaceUtilsTest.py``: real paths such as
  ``CFEE_Database_230/01-04/Images1/01_126_3963.jpg``,
  ``05-08/Images2/06_111_2638.jpg``, ``21-26/Images6/23_178_6632.jpg`` and
  ``21-26/Images6/26_222.jpg``; names split as ``<emotion>_<subject>_<serial>``;
  a comment counting 5954 images of 230 subjects; and odd names in
  ``21-26/Images6`` such as ``04_221.jpg`` (no serial) and ``260_19.png.jpg``.

So the layout is::

    CFEE_Database_230/
        AU_annotation_all_subjects.xls      (not read here)
        01-04/Images1/01_126_3963.jpg       <prefix>_<subject>_<serial>.jpg
        05-08/Images2/...
        ...
        21-26/Images6/...

where the top-level folders group four emotion prefixes each (the last one six).
Prefixes apparently run up to 26 (the folder ``21-26``, files ``23_*`` and
``26_*``, and 5954 / 230 = 25.9 images per subject), so they are probably *not*
the 22 category ids of :mod:`cfer.taxonomy` one for one: which prefix is which
category, and which prefixes are outside the 22, is given only by the dataset's
summary sheet, which is not public. Pass that mapping as ``prefix_map`` (see
:func:`read_prefix_map`) when reading the real distribution, together with
``skip_invalid=True`` to drop the prefixes outside it as the reference code
does. Without a ``prefix_map``, prefix ``k`` means the category with
``Category.id == k``, which is what :func:`write_cfee` writes.

File names are parsed as ``<prefix:2 digits>_<subject:digits>[_<serial:digits>]``
optionally followed by a lowercase tag such as ``_detectface`` (the face crops
of the reference code). Accepted extensions: .jpg, .jpeg, .png (any case).
Hidden files (``._*``, editor temp files) are ignored.

:func:`write_cfee` writes the same layout as PNG files named
``<prefix:02d>_<subject:03d>_<sample index:04d>.png`` plus a ``manifest.csv``
with every target of every image; :func:`read_cfee` reads the manifest back when
present, so a written dataset round-trips exactly (pixels, classes, subjects,
action units, valence/arousal).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from cfer.data.dataset import FaceExpressionDataset
from cfer.data.images import display_path
from cfer.data.reading import OnBadFile, ReadOptions, SkipLog, decode_files, load_cache, write_skipped
from cfer.io import atomic_write_bytes
from cfer.taxonomy import CATEGORY_NAMES, get_category

__all__ = [
    "MANIFEST_NAME",
    "read_cfee",
    "read_manifest",
    "read_prefix_map",
    "write_cfee",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"

_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
_FILE_NAME = re.compile(
    r"^(?P<prefix>\d{2})_(?P<subject>\d+)(?:_(?P<serial>\d+))?(?:_[a-z][a-z0-9]*)?$"
)
_AU_COLUMN = re.compile(r"^AU(?P<number>\d+)$")
# Top-level folders of the distribution: four prefixes each, the last one six.
_PREFIX_GROUPS: tuple[tuple[int, int], ...] = (
    (1, 4), (5, 8), (9, 12), (13, 16), (17, 20), (21, 26)
)
_EXPECTED_LAYOUT = "<root>/<group such as 01-04>/Images<k>/<prefix>_<subject>_<serial>.jpg"


@dataclass(frozen=True)
class _ImageFile:
    path: Path
    relative: str
    prefix: int
    subject: int
    serial: int
    class_index: int


def read_cfee(
    root: str | Path,
    size: int | None = None,
    categories: Sequence[str] | None = None,
    cache: str | Path | None = None,
    prefix_map: Mapping[int, str] | None = None,
    skip_invalid: bool = False,
    use_manifest: bool = True,
    num_workers: int | None = None,
    on_bad_file: OnBadFile = "skip",
) -> FaceExpressionDataset:
    """Reads a CFEE_Database_230 folder into memory, decoding each image once.

    Images are converted to RGB. With ``size``, each is center-cropped to the
    largest centered square and resized to ``size`` x ``size`` (bilinear,
    antialiased); JPEGs are decoded at reduced scale first when that still
    leaves at least ``size`` pixels, which makes reading full-resolution CFEE
    several times faster. Without ``size``, all images must share one size and
    are kept as they are.

    Args:
        root: The ``CFEE_Database_230`` folder (the one holding the group folders).
        size: Side of the square output images, or None to keep the original size.
        categories: Category names to keep; the dataset's classes are these in
            CFEE id order. Default: every category of ``prefix_map``, i.e. all 22
            categories of :mod:`cfer.taxonomy` without one.
        cache: Optional ``.pt`` file. If it exists and was built from the same
            files with the same arguments it is loaded instead of decoding;
            otherwise the images are decoded and the cache (re)written.
        prefix_map: File-name prefix -> category name. Default: prefix ``k`` is
            the category whose id is ``k``.
        skip_invalid: Skip, with a logged warning, files whose name does not
            parse or whose prefix is not in ``prefix_map``, instead of raising.
        use_manifest: Read action units and valence/arousal from
            ``root/manifest.csv`` when it exists (as written by :func:`write_cfee`).
        num_workers: Decoding threads; default ``min(8, os.cpu_count())``.
        on_bad_file: ``"skip"`` leaves out (and records, see :mod:`cfer.data.reading`) an image
            that cannot be decoded; ``"error"`` stops at it.

    Returns:
        The dataset: uint8 images (N, 3, size, size), or (N, 3, H, W) without
        ``size``; targets into ``classes``; subject ids from the file names; AU
        intensities and valence/arousal when a manifest provides them. Samples
        are ordered by (prefix, subject, serial, path).

    Raises:
        FileNotFoundError: If ``root`` does not exist or holds no image in the
            expected layout.
        ValueError: If a file name does not parse, a prefix is unknown, an image
            cannot be decoded under ``on_bad_file="error"``, or the manifest
            disagrees with the files.
        KeyError: If a category name is unknown.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"CFEE root {root} does not exist or is not a folder; pass the path of the "
            "unzipped CFEE_Database_230 folder"
        )
    if size is not None and size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    prefix_to_name = _prefix_to_name(prefix_map)
    classes = _resolve_categories(categories, prefix_to_name)
    files = _list_files(root, prefix_to_name, classes, skip_invalid)

    manifest_path = root / MANIFEST_NAME
    manifest_used = use_manifest and manifest_path.is_file()
    fingerprint = _fingerprint(files, manifest_path if manifest_used else None)
    metadata = {
        "source": "cfee",
        "size": size,
        "classes": list(classes),
        "prefix_map": {str(prefix): name for prefix, name in sorted(prefix_to_name.items())},
        "skip_invalid": skip_invalid,
        "use_manifest": use_manifest,
        "fingerprint": fingerprint,
        "root": display_path(root.resolve()),
        "on_bad_file": on_bad_file,
    }
    if cache is not None:
        cached = load_cache(Path(cache), metadata)
        if cached is not None:
            return cached

    skips = SkipLog(on_bad_file)
    options = ReadOptions(size=size, on_bad_file=on_bad_file, num_workers=num_workers)
    images, kept = decode_files([file.path for file in files], options, skips)
    files = [file for file, ok in zip(files, kept) if ok]
    if not files:
        raise FileNotFoundError(f"no decodable image under {root} ({len(skips.items)} skipped)")
    skips.warn(f"CFEE at {root}", len(kept))
    au_intensities, au_ids, valence_arousal = None, None, None
    if manifest_used:
        au_intensities, au_ids, valence_arousal = _targets_from_manifest(
            root, files, prefix_to_name
        )
    dataset = FaceExpressionDataset(
        images=images,
        targets=torch.tensor([file.class_index for file in files], dtype=torch.int64),
        classes=classes,
        subject_ids=torch.tensor([file.subject for file in files], dtype=torch.int64),
        au_intensities=au_intensities,
        au_ids=au_ids,
        valence_arousal=valence_arousal,
        skipped=skips.items,
    )
    empty = [name for name, count in dataset.class_counts().items() if count == 0]
    if empty:
        logger.warning("CFEE root %s has no image of class(es) %s", root, empty)
    logger.info("read %s from %s", dataset, root)
    if cache is not None:
        dataset.save(cache, metadata=metadata)
        write_skipped(skips.items, Path(cache).parent)
    return dataset


def write_cfee(
    dataset: FaceExpressionDataset,
    root: str | Path,
    manifest: bool = True,
    prefix_map: Mapping[int, str] | None = None,
    num_workers: int | None = None,
) -> Path:
    """Writes a dataset in the CFEE_Database_230 layout, as PNG files.

    Sample ``i`` goes to ``<group>/Images<k>/<prefix:02d>_<subject:03d>_<i:04d>.png``.
    Each file is written to a temp file and renamed, so an interrupted export never
    leaves a partial image; files that already exist are skipped, so re-running
    resumes an interrupted export (it does not check their content).

    Args:
        dataset: The dataset; every class must be a CFEE category name and every
            subject id non-negative. Transforms are not applied.
        root: Destination folder, created if needed.
        manifest: Also write ``root/manifest.csv`` with one row per image:
            ``path`` (relative, POSIX), ``category``, ``cfee_id`` (the file prefix),
            ``subject_id``, ``valence``, ``arousal`` (empty when absent), and one
            ``AU<nn>`` column per action unit when present.
        prefix_map: File-name prefix -> category name, as for :func:`read_cfee`.
        num_workers: Encoding threads; default ``min(8, os.cpu_count())``.

    Returns:
        ``root``.

    Raises:
        ValueError: If a class has no prefix or a subject id is negative.
    """
    root = Path(root)
    name_to_prefix = {name: prefix for prefix, name in _prefix_to_name(prefix_map).items()}
    missing = [name for name in dataset.classes if name not in name_to_prefix]
    if missing:
        raise ValueError(
            f"class(es) {missing} have no CFEE file prefix; classes must be CFEE category "
            f"names ({', '.join(CATEGORY_NAMES)}) present in prefix_map"
        )
    if len(dataset) and int(dataset.subject_ids.min()) < 0:
        raise ValueError("subject ids must be non-negative to be written into file names")

    relative_paths = []
    for index in range(len(dataset)):
        prefix = name_to_prefix[dataset.classes[int(dataset.targets[index])]]
        subject = int(dataset.subject_ids[index])
        relative_paths.append(
            f"{_group_folder(prefix)}/{prefix:02d}_{subject:03d}_{index:04d}.png"
        )
    for folder in sorted({path.rsplit("/", 1)[0] for path in relative_paths}):
        (root / folder).mkdir(parents=True, exist_ok=True)

    def write_one(index: int) -> bool:
        destination = root / relative_paths[index]
        if destination.exists():
            return False
        pixels = dataset.images[index].permute(1, 2, 0).contiguous().numpy()
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        atomic_write_bytes(destination, buffer.getvalue())
        return True

    with ThreadPoolExecutor(max_workers=_workers(num_workers)) as pool:
        written = sum(pool.map(write_one, range(len(dataset))))
    logger.info(
        "wrote %d image(s) to %s, skipped %d existing", written, root, len(dataset) - written
    )
    if manifest:
        _write_manifest(root, dataset, relative_paths, name_to_prefix)
    return root


def read_manifest(root: str | Path) -> list[dict[str, Any]]:
    """Reads ``root/manifest.csv`` as written by :func:`write_cfee`.

    Returns:
        One dict per row: ``path`` (str), ``category`` (str), ``cfee_id`` (int),
        ``subject_id`` (int), ``valence`` and ``arousal`` (float, or None when
        empty) and each ``AU<nn>`` column (float; NaN when empty).

    Raises:
        FileNotFoundError: If there is no manifest.
        ValueError: If a required column is missing or a value does not parse.
    """
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"no {MANIFEST_NAME} in {root}; it is written by write_cfee(..., manifest=True)"
        )
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        columns = reader.fieldnames or []
        required = ["path", "category", "cfee_id", "subject_id", "valence", "arousal"]
        absent = [column for column in required if column not in columns]
        if absent:
            raise ValueError(f"{path} lacks column(s) {absent}; found columns {columns}")
        au_columns = [column for column in columns if _AU_COLUMN.match(column)]
        rows = []
        for line_number, raw in enumerate(reader, start=2):
            try:
                row: dict[str, Any] = {
                    "path": raw["path"],
                    "category": raw["category"],
                    "cfee_id": int(raw["cfee_id"]),
                    "subject_id": int(raw["subject_id"]),
                    "valence": float(raw["valence"]) if raw["valence"] else None,
                    "arousal": float(raw["arousal"]) if raw["arousal"] else None,
                }
                for column in au_columns:
                    row[column] = float(raw[column]) if raw[column] else math.nan
            except (TypeError, ValueError) as error:
                raise ValueError(f"{path} line {line_number}: {error}") from error
            rows.append(row)
    return rows


def read_prefix_map(path: str | Path) -> dict[int, str]:
    """Reads a file-prefix -> category mapping from a two-column CSV.

    Export the ``summary`` sheet of the distribution's
    ``AU_annotation_all_subjects.xls`` (first column the numeric id used in file
    names, second the emotion name) to CSV and pass it here; names are matched to
    :mod:`cfer.taxonomy` in any case or spacing (``"Happily surprised"``). A
    header row is skipped.

    Returns:
        Prefix -> canonical category name.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If a row is malformed or an id repeats.
        KeyError: If a name is not a CFEE category.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prefix map {path} does not exist")
    mapping: dict[int, str] = {}
    with path.open(newline="", encoding="utf-8") as file:
        for line_number, row in enumerate(csv.reader(file), start=1):
            cells = [cell.strip() for cell in row if cell.strip()]
            if not cells:
                continue
            if len(cells) < 2:
                raise ValueError(f"{path} line {line_number}: expected 'id,name', got {row}")
            if not cells[0].isdigit():
                if line_number == 1:
                    continue  # header
                raise ValueError(f"{path} line {line_number}: id {cells[0]!r} is not a number")
            prefix = int(cells[0])
            if prefix in mapping:
                raise ValueError(f"{path} line {line_number}: id {prefix} appears twice")
            mapping[prefix] = get_category(cells[1]).name
    return mapping


# --- listing -------------------------------------------------------------------


def _prefix_to_name(prefix_map: Mapping[int, str] | None) -> dict[int, str]:
    if prefix_map is None:
        return {get_category(name).id: name for name in CATEGORY_NAMES}
    mapping = {int(prefix): get_category(name).name for prefix, name in prefix_map.items()}
    names = list(mapping.values())
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"prefix_map maps several prefixes to {repeated}")
    return mapping


def _resolve_categories(
    categories: Sequence[str] | None, prefix_to_name: Mapping[int, str]
) -> tuple[str, ...]:
    if categories is None:
        resolved = set(prefix_to_name.values())
    elif isinstance(categories, str):
        raise TypeError(f"categories must be a sequence of names, got the string {categories!r}")
    else:
        resolved = {get_category(name).name for name in categories}
        unmapped = sorted(resolved - set(prefix_to_name.values()))
        if unmapped:
            raise ValueError(
                f"categories {unmapped} have no file prefix in prefix_map "
                f"{dict(sorted(prefix_to_name.items()))}"
            )
    return tuple(name for name in CATEGORY_NAMES if name in resolved)


def _list_files(
    root: Path,
    prefix_to_name: Mapping[int, str],
    classes: tuple[str, ...],
    skip_invalid: bool,
) -> list[_ImageFile]:
    candidates = sorted(
        path
        for path in root.glob("*/Images*/*")
        if path.is_file()
        and not path.name.startswith(".")
        and path.suffix.lower() in _IMAGE_SUFFIXES
    )
    if not candidates:
        raise FileNotFoundError(_no_images_message(root))

    class_index = {name: index for index, name in enumerate(classes)}
    files: list[_ImageFile] = []
    skipped: Counter[str] = Counter()
    for path in candidates:
        relative = path.relative_to(root).as_posix()
        match = _FILE_NAME.match(path.stem)
        if match is None:
            if skip_invalid:
                skipped["name does not parse"] += 1
                logger.warning("skipping %s: name does not parse", path)
                continue
            raise ValueError(
                f"cannot parse CFEE file name {path}: expected "
                "<2-digit emotion>_<subject>[_<serial>].<jpg|png>, e.g. 01_126_3963.jpg; "
                "rename or remove it, or pass skip_invalid=True"
            )
        prefix = int(match["prefix"])
        if prefix not in prefix_to_name:
            if skip_invalid:
                skipped[f"prefix {prefix:02d} not in prefix_map"] += 1
                continue
            raise ValueError(
                f"unknown emotion prefix {prefix:02d} in {path}; known prefixes: "
                f"{sorted(prefix_to_name)}. The real CFEE distribution has prefixes beyond 22: "
                "pass prefix_map (from the dataset's summary sheet, see read_prefix_map) and "
                "skip_invalid=True to drop the ones outside it"
            )
        name = prefix_to_name[prefix]
        if name not in class_index:
            continue  # a known category the caller did not ask for
        files.append(
            _ImageFile(
                path=path,
                relative=relative,
                prefix=prefix,
                subject=int(match["subject"]),
                serial=int(match["serial"]) if match["serial"] is not None else -1,
                class_index=class_index[name],
            )
        )
    for reason, count in sorted(skipped.items()):
        logger.warning("skipped %d file(s) under %s: %s", count, root, reason)
    if not files:
        raise FileNotFoundError(
            f"no image of categories {list(classes)} under {root} "
            f"({len(candidates)} image file(s) found, {sum(skipped.values())} skipped)"
        )
    files.sort(key=lambda file: (file.prefix, file.subject, file.serial, file.relative))
    return files


def _no_images_message(root: Path) -> str:
    elsewhere = [
        path
        for path in root.rglob("*")
        if path.suffix.lower() in _IMAGE_SUFFIXES and not path.name.startswith(".")
    ]
    hint = ""
    if elsewhere:
        example = elsewhere[0].relative_to(root).as_posix()
        hint = (
            f" Found {len(elsewhere)} image file(s) elsewhere, e.g. {example!r}: pass the "
            "folder that directly contains the group folders."
        )
    return (
        f"no image found under {root} in the CFEE_Database_230 layout "
        f"{_EXPECTED_LAYOUT!r} (.jpg, .jpeg or .png).{hint}"
    )


def _group_folder(prefix: int) -> str:
    for group_number, (low, high) in enumerate(_PREFIX_GROUPS, start=1):
        if low <= prefix <= high:
            return f"{low:02d}-{high:02d}/Images{group_number}"
    # Prefixes outside the distribution's groups (only via a custom prefix_map).
    return f"{prefix:02d}-{prefix:02d}/Images{prefix}"


# --- decoding --------------------------------------------------------------------


def _workers(num_workers: int | None) -> int:
    if num_workers is not None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, got {num_workers}")
        return num_workers
    return min(8, os.cpu_count() or 1)


# --- manifest ------------------------------------------------------------------


def _targets_from_manifest(
    root: Path,
    files: Sequence[_ImageFile],
    prefix_to_name: Mapping[int, str],
) -> tuple[torch.Tensor | None, tuple[int, ...] | None, torch.Tensor | None]:
    rows = {row["path"]: row for row in read_manifest(root)}
    manifest_path = root / MANIFEST_NAME
    selected = []
    for file in files:
        row = rows.get(file.relative)
        if row is None:
            raise ValueError(
                f"{manifest_path} has no row for {file.relative}; re-run write_cfee to "
                "rewrite it, or pass use_manifest=False"
            )
        expected = (prefix_to_name[file.prefix], file.prefix, file.subject)
        found = (row["category"], row["cfee_id"], row["subject_id"])
        if expected != found:
            raise ValueError(
                f"{manifest_path} row for {file.relative} says (category, cfee_id, "
                f"subject_id) = {found} but the file name says {expected}"
            )
        selected.append(row)

    au_columns = sorted(
        (column for column in selected[0] if _AU_COLUMN.match(column)),
        key=lambda column: int(column[2:]),
    )
    au_intensities, au_ids = None, None
    if au_columns:
        au_ids = tuple(int(column[2:]) for column in au_columns)
        au_intensities = torch.tensor(
            [[row[column] for column in au_columns] for row in selected], dtype=torch.float32
        )
    valence_arousal = None
    if any(row["valence"] is not None or row["arousal"] is not None for row in selected):
        valence_arousal = torch.tensor(
            [
                [
                    math.nan if row["valence"] is None else row["valence"],
                    math.nan if row["arousal"] is None else row["arousal"],
                ]
                for row in selected
            ],
            dtype=torch.float32,
        )
    return au_intensities, au_ids, valence_arousal


def _write_manifest(
    root: Path,
    dataset: FaceExpressionDataset,
    relative_paths: Sequence[str],
    name_to_prefix: Mapping[str, int],
) -> None:
    au_columns = [f"AU{au:02d}" for au in dataset.au_ids]
    header = ["path", "category", "cfee_id", "subject_id", "valence", "arousal", *au_columns]
    order = sorted(range(len(dataset)), key=lambda index: relative_paths[index])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for index in order:
        name = dataset.classes[int(dataset.targets[index])]
        valence, arousal = ("", "")
        if dataset.valence_arousal is not None:
            valence, arousal = (repr(float(value)) for value in dataset.valence_arousal[index])
        aus = []
        if dataset.au_intensities is not None:
            aus = [repr(float(value)) for value in dataset.au_intensities[index]]
        writer.writerow(
            [
                relative_paths[index],
                name,
                name_to_prefix[name],
                int(dataset.subject_ids[index]),
                valence,
                arousal,
                *aus,
            ]
        )
    atomic_write_bytes(root / MANIFEST_NAME, buffer.getvalue().encode("utf-8"))


# --- files -----------------------------------------------------------------------


def _fingerprint(files: Sequence[_ImageFile], manifest: Path | None) -> str:
    """Hash of the selected files' paths, sizes and times, to tell a stale cache."""
    digest = hashlib.sha256()
    for path, relative in [(file.path, file.relative) for file in files] + (
        [(manifest, MANIFEST_NAME)] if manifest is not None else []
    ):
        stat = path.stat()
        digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
