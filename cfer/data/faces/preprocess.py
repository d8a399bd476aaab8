"""``cfer preprocess IN OUT``: find the face in each photo, align it, crop it, and write a dataset.

``IN`` is a folder per class (``IN/<class>/*.jpg``, optionally under ``train/``/``test/``), a CSV
manifest (``path,label,...``; see :mod:`cfer.data.folders`), or a flat folder of unlabelled photos.
Each image is decoded (:func:`cfer.data.images.decode_image`), searched for faces with MTCNN at a
reduced size (``detect_size``), aligned on its 5 landmarks at full resolution
(:func:`cfer.data.faces.align.align_face`), and written as PNG:

* ``layout="folder"``: ``OUT/[<partition>/]<class>/<name>.png``, readable with ``--dataset folder``;
* ``layout="manifest"``: ``OUT/images/<relative path>.png`` and ``OUT/manifest.csv`` with the
  input's labels, subjects, partitions and affect, readable with ``--dataset csv``.

``OUT/report.csv`` lists every input with what happened to it: ``ok``, ``several faces`` (the most
probable one is kept, or none with ``several_faces="skip"``), ``no face`` (left out, or center-cropped
with ``no_face="center"``) or ``bad file`` (with the reason). A bad file never stops the run
(unless ``on_bad_file="error"``). Images already written are kept, so an interrupted run resumes.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from cfer.data.faces.align import align_face
from cfer.data.faces.mtcnn import MTCNN, Detection
from cfer.data.folders import folder_entries, manifest_entries
from cfer.data.images import (
    DEFAULT_MAX_PIXELS,
    BadImageError,
    decode_image,
    display_path,
    is_image_file,
)
from cfer.data.reading import ImageEntry, OnBadFile, SkipLog
from cfer.io import atomic_write_bytes, atomic_write_text

__all__ = ["PreprocessConfig", "preprocess_images"]

logger = logging.getLogger(__name__)

REPORT_NAME = "report.csv"


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of ``cfer preprocess``."""

    size: int = 224  # side of the written square faces
    margin: float = 0.25  # room around the face, as a fraction of ArcFace's tight crop
    layout: Literal["folder", "manifest"] = "folder"  # folder per class, or images/ + manifest.csv
    detect_size: int = 640  # photos are searched at most this large (longer side); alignment uses full size
    min_face_size: int = 20  # smallest face searched for, in pixels of the searched image
    several_faces: Literal["most-probable", "skip"] = "most-probable"  # a photo with more than one face
    no_face: Literal["skip", "center"] = "skip"  # a photo without a face: left out, or its center square kept
    on_bad_file: OnBadFile = "skip"  # a damaged file: listed in the report, or "error" to stop
    max_image_pixels: int = DEFAULT_MAX_PIXELS  # larger images are refused
    progress: bool = True  # a progress bar


@dataclass(frozen=True)
class _Outcome:
    status: str  # ok, several faces, no face, bad file, kept
    faces: int = 0
    probability: float | None = None
    output: str = ""
    detail: str = ""


def preprocess_images(source: str | Path, out_dir: str | Path, config: PreprocessConfig = PreprocessConfig(),
                      detector: MTCNN | None = None) -> dict[str, object]:
    """Detects, aligns and crops every face of ``source`` into ``out_dir``; see the module docstring.

    Args:
        source: A folder per class, a CSV manifest, or a flat folder of photos.
        out_dir: Where the faces, ``report.csv`` (and ``manifest.csv``) go.
        config: The settings.
        detector: A loaded MTCNN to reuse; default: a new one.

    Returns:
        Counts per status, ``images``, ``seconds``, ``faces_per_second`` and the report's path.

    Raises:
        FileNotFoundError: If ``source`` does not exist or holds no image.
        ValueError: Under ``on_bad_file="error"``, at the first bad file.
    """
    source, out_dir = Path(source), Path(out_dir)
    entries, base = _inputs(source)
    detector = detector or MTCNN(min_face_size=config.min_face_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    skips = SkipLog(config.on_bad_file)
    rows, manifest = [], []
    start = time.perf_counter()
    for entry in tqdm(entries, desc="preprocess", disable=not config.progress, dynamic_ncols=True):
        relative = _relative(entry, base, config.layout)
        outcome = _one(entry, out_dir / relative, config, detector, skips)
        rows.append([display_path(entry.path), outcome.status, outcome.faces,
                     "" if outcome.probability is None else f"{outcome.probability:.4f}",
                     display_path(relative) if outcome.output else "", outcome.detail])
        if outcome.output:
            manifest.append((relative, entry))
    seconds = time.perf_counter() - start
    report = _write_report(out_dir, rows)
    if config.layout == "manifest":
        _write_manifest(out_dir, manifest)
    counts = {status: sum(row[1] == status for row in rows) for status in dict.fromkeys(row[1] for row in rows)}
    detected = sum(1 for row in rows if row[1] in ("ok", "several faces"))
    logger.info("preprocessed %d image(s) in %.1f s: %s; report %s", len(rows), seconds, counts, report)
    return {"images": len(rows), "counts": counts, "seconds": seconds, "report": str(report),
            "faces_per_second": detected / seconds if seconds > 0 else 0.0}


def _inputs(source: Path) -> tuple[list[ImageEntry], Path]:
    """The images to process and the folder their output paths are relative to."""
    skips = SkipLog("skip")  # listing problems (a non-image file in a class folder) are reported per image below
    if source.is_file():
        return manifest_entries(source, skips), source.parent
    if not source.is_dir():
        raise FileNotFoundError(f"{display_path(source)} does not exist; pass a folder of photos (one sub-folder "
                                "per class, or none) or a CSV manifest")
    if any(path.is_dir() and not path.name.startswith(".") for path in source.iterdir()):
        return folder_entries(source, skips), source
    photos = sorted(path for path in source.iterdir() if is_image_file(path))
    if not photos:
        raise FileNotFoundError(f"no image in {display_path(source)} (.jpg, .jpeg, .png, .bmp, .webp or .tif)")
    return [ImageEntry(path, "") for path in photos], source


def _relative(entry: ImageEntry, base: Path, layout: str) -> Path:
    """Where the face of ``entry`` goes under OUT; names that are not UTF-8 are written escaped (``\\xff``)."""
    name = display_path(entry.path.stem) + ".png"
    if layout == "manifest":
        try:
            folder = entry.path.parent.relative_to(base)
        except ValueError:  # an absolute path outside the CSV's folder
            folder = Path()
        return Path("images", *(display_path(part) for part in folder.parts), name)
    return Path(*(part for part in (entry.partition, entry.category) if part), name)


def _one(entry: ImageEntry, destination: Path, config: PreprocessConfig, detector: MTCNN,
         skips: SkipLog) -> _Outcome:
    if destination.is_file():
        return _Outcome("kept", output=str(destination), detail="written by an earlier run")
    try:
        if not entry.path.is_file():
            raise BadImageError(entry.path, f"file is missing (listed at {entry.origin or 'the manifest'})")
        image = decode_image(entry.path, None, config.max_image_pixels)
    except BadImageError as error:
        skips.add(entry.path, error.reason)  # raises under on_bad_file="error"
        return _Outcome("bad file", detail=error.reason)
    detection = _detect(detector, image, config.detect_size)
    if len(detection) == 0:
        if config.no_face == "skip":
            return _Outcome("no face")
        _write_png(destination, np.array(Image.fromarray(_center_square(image)).resize((config.size, config.size))))
        return _Outcome("no face", output=str(destination), detail="center square kept (no_face=center)")
    status = "ok" if len(detection) == 1 else "several faces"
    if status == "several faces" and config.several_faces == "skip":
        return _Outcome(status, len(detection), detail="left out (several_faces=skip)")
    _write_png(destination, align_face(image, detection.landmarks[0], config.size, config.margin))
    detail = "" if status == "ok" else f"kept the most probable of {len(detection)}"
    return _Outcome(status, len(detection), float(detection.probabilities[0]), str(destination), detail)


def _detect(detector: MTCNN, image: np.ndarray, detect_size: int) -> Detection:
    """Detection on a copy at most ``detect_size`` pixels long, mapped back to ``image``'s pixels."""
    scale = min(1.0, detect_size / max(image.shape[:2]))
    if scale == 1.0:
        return detector.detect(image)
    small = np.array(Image.fromarray(image).resize((round(image.shape[1] * scale), round(image.shape[0] * scale)),
                                                   Image.Resampling.BILINEAR))
    found = detector.detect(small)
    return Detection(found.boxes / scale, found.probabilities, found.landmarks / scale)


def _center_square(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top:top + side, left:left + side]


def _write_png(path: Path, pixels: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())


def _write_report(out_dir: Path, rows: list[list[object]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["input", "status", "faces", "probability", "output", "detail"])
    writer.writerows(rows)
    return atomic_write_text(out_dir / REPORT_NAME, buffer.getvalue())


def _write_manifest(out_dir: Path, written: list[tuple[Path, ImageEntry]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "subject", "partition", "valence", "arousal"])
    for relative, entry in written:
        valence, arousal = entry.valence_arousal or ("", "")
        writer.writerow([relative.as_posix(), entry.category, "" if entry.subject is None else entry.subject,
                         entry.partition or "", valence, arousal])
    return atomic_write_text(out_dir / "manifest.csv", buffer.getvalue())
