"""The outputs of ``cfer predict``: one row per face (per face and frame for a video), as CSV, JSON and a table.

``predictions.csv`` has the columns :data:`CSV_COLUMNS` and then ``p_<class>``, one per class of the
model, in output order. Empty cells are values that do not apply (no frame for a photo, no valence
without a regression head). ``predictions.json`` holds the same rows as objects under ``"faces"``
(``top_k`` as a list of ``{"class", "probability"}``, ``probabilities`` as an object), beside the
model's spec, the inputs and what was skipped. Both are written atomically.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfer.io import atomic_write_text, write_json
from cfer.predict.predictor import FacePrediction

__all__ = ["CSV_COLUMNS", "CSV_NAME", "JSON_NAME", "FaceRecord", "format_table", "write_predictions"]

CSV_NAME = "predictions.csv"
JSON_NAME = "predictions.json"
CSV_COLUMNS: tuple[str, ...] = (
    "source", "frame", "time_s", "face", "track", "x1", "y1", "x2", "y2", "detection_score", "label",
    "probability", "top_k", "components", "valence", "arousal", "cam",
)
"""The fixed columns of ``predictions.csv``; ``p_<class>`` columns follow."""


@dataclass(frozen=True)
class FaceRecord:
    """One output row: a face of a photo, or of a video frame."""

    source: str  # the input file, as printable text
    frame: int | None  # video frame number; None for a photo
    time: float | None  # seconds into the video
    face: int  # position of the face in its image or frame, most probable first
    prediction: FacePrediction
    cam: str | None = None  # the Grad-CAM overlay written for it

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"source": self.source, "frame": self.frame, "time_s": self.time, "face": self.face,
                **self.prediction.to_dict(), "cam": self.cam}


def write_predictions(records: Sequence[FaceRecord], class_names: Sequence[str], out_dir: str | Path,
                      header: Mapping[str, Any]) -> tuple[Path, Path]:
    """Writes ``predictions.csv`` and ``predictions.json`` to ``out_dir``, atomically.

    Args:
        records: The rows.
        class_names: The model's classes, for the ``p_<class>`` columns.
        out_dir: Destination folder (created).
        header: JSON-ready entries written before ``"faces"`` in the JSON (model, inputs, skipped ...).

    Returns:
        ``(csv_path, json_path)``.
    """
    out_dir = Path(out_dir)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *(f"p_{name}" for name in class_names)])
    writer.writerows(_csv_row(record, class_names) for record in records)
    csv_path = atomic_write_text(out_dir / CSV_NAME, buffer.getvalue())
    json_path = write_json(out_dir / JSON_NAME, {**header, "faces": [record.to_dict() for record in records]})
    return csv_path, json_path


def _csv_row(record: FaceRecord, class_names: Sequence[str]) -> list[str]:
    face = record.prediction
    values: list[Any] = [
        record.source, record.frame, _number(record.time, 3), record.face, face.track,
        *(_number(value, 1) for value in face.box), _number(face.detection_score, 4), face.label,
        _number(face.probability, 6), ";".join(f"{name}:{probability:.4f}" for name, probability in face.top_k),
        "+".join(face.components), _number(face.valence, 4), _number(face.arousal, 4), record.cam,
    ]
    values += [_number(face.probabilities[name], 6) for name in class_names]
    return ["" if value is None else str(value) for value in values]


def _number(value: float | None, digits: int) -> str | None:
    return None if value is None else f"{value:.{digits}f}"


def format_table(records: Sequence[FaceRecord], max_rows: int = 20) -> str:
    """A readable table of the rows, the first ``max_rows`` of them.

    Returns:
        Aligned text lines: input, frame, face, box, top classes, components, valence, arousal.
    """
    if not records:
        return "no face found"
    show_frames = any(record.frame is not None for record in records)
    show_affect = any(record.prediction.valence is not None for record in records)
    header = ["input", *(["frame"] if show_frames else []), "face", "box (x1,y1)-(x2,y2)", "top classes",
              "components", *(["valence", "arousal"] if show_affect else [])]
    rows = [header] + [_table_row(record, show_frames, show_affect) for record in records[:max_rows]]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    if len(records) > max_rows:
        lines.append(f"... and {len(records) - max_rows} more row(s)")
    return "\n".join(lines)


def _table_row(record: FaceRecord, show_frames: bool, show_affect: bool) -> list[str]:
    face = record.prediction
    x1, y1, x2, y2 = (round(value) for value in face.box)
    row = [Path(record.source).name, *([str(record.frame) if record.frame is not None else "-"] if show_frames else []),
           str(record.face), f"({x1},{y1})-({x2},{y2})",
           ", ".join(f"{name} {probability:.2f}" for name, probability in face.top_k),
           "+".join(face.components) or "-"]
    if show_affect:
        row += [_signed(face.valence), _signed(face.arousal)]
    return row


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"
