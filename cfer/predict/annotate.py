"""Boxes and labels drawn on frames, and the annotated video ``cfer predict --annotate OUT.mp4`` writes.

:class:`AnnotatedVideo` encodes with OpenCV into a temporary file beside the destination and renames
it over the destination when closed without error, so an interrupted run never leaves a truncated
video under the final name.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import cv2
import numpy as np

from cfer.data.images import display_path
from cfer.io import disk_full_error
from cfer.predict.predictor import FacePrediction

__all__ = ["FOURCC_BY_SUFFIX", "AnnotatedVideo", "draw_faces"]

_FULL_BELOW = 1 << 20  # bytes free after encoding under which the disk is taken to have filled

FOURCC_BY_SUFFIX = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}
"""The OpenCV codec used for each supported output suffix."""

_COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]


def draw_faces(image: np.ndarray, faces: Sequence[FacePrediction]) -> np.ndarray:
    """A copy of the image with each face's box, label, probability (and valence, arousal) drawn.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        faces: The predictions of that image.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    canvas = np.ascontiguousarray(image).copy()
    scale = max(0.4, min(canvas.shape[:2]) / 720)
    thickness = max(1, round(2 * scale))
    for index, face in enumerate(faces):
        colour = _COLOURS[(face.track if face.track is not None else index) % len(_COLOURS)]
        x1, y1, x2, y2 = (round(value) for value in face.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        lines = [f"{face.label} {face.probability:.2f}"]
        if face.components:
            lines[0] += f" ({'+'.join(face.components)})"
        if face.valence is not None and face.arousal is not None:
            lines.append(f"V {face.valence:+.2f} A {face.arousal:+.2f}")
        _label(canvas, lines, (x1, y1), colour, scale, thickness)
    return canvas


def _label(canvas: np.ndarray, lines: Sequence[str], corner: tuple[int, int], colour: tuple[int, int, int],
           scale: float, thickness: int) -> None:
    """Text lines on a filled band above ``corner`` (below it when there is no room)."""
    font, text_scale = cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale
    sizes = [cv2.getTextSize(line, font, text_scale, thickness)[0] for line in lines]
    line_height = max(height for _, height in sizes) + round(6 * scale)
    band = line_height * len(lines)
    x, top = corner[0], corner[1] - band if corner[1] - band >= 0 else corner[1]
    cv2.rectangle(canvas, (x, top), (x + max(width for width, _ in sizes) + 6, top + band), colour, cv2.FILLED)
    for row, line in enumerate(lines):
        baseline = top + (row + 1) * line_height - round(4 * scale)
        cv2.putText(canvas, line, (x + 3, baseline), font, text_scale, (255, 255, 255), thickness, cv2.LINE_AA)


class AnnotatedVideo:
    """Writes RGB frames with their faces drawn to a video file; use it in a ``with`` block.

    Args:
        path: Destination; its suffix picks the codec (:data:`FOURCC_BY_SUFFIX`).
        fps: Frame rate of the output.
        size: ``(width, height)`` of the frames.

    Raises:
        ValueError: If the suffix is not supported, or OpenCV cannot open an encoder for it.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in FOURCC_BY_SUFFIX:
            raise ValueError(f"--annotate {display_path(self.path)}: unsupported video suffix {suffix!r}; use one of "
                             f"{sorted(FOURCC_BY_SUFFIX)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.stem}.", suffix=f".tmp{suffix}")
        os.close(handle)
        self._temporary = Path(name)
        self.size = size
        self.frames = 0
        self._writer = cv2.VideoWriter(str(self._temporary), cv2.VideoWriter_fourcc(*FOURCC_BY_SUFFIX[suffix]),
                                       fps if fps > 0 else 25.0, size)
        if not self._writer.isOpened():
            self._temporary.unlink(missing_ok=True)
            raise ValueError(f"OpenCV cannot encode {suffix} video here (codec {FOURCC_BY_SUFFIX[suffix]}); "
                             "try --annotate OUT.avi")

    def write(self, image: np.ndarray, faces: Sequence[FacePrediction]) -> None:
        """Adds one ``(H, W, 3)`` uint8 RGB frame, with ``faces`` drawn on it."""
        frame = cv2.cvtColor(draw_faces(image, faces), cv2.COLOR_RGB2BGR)
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(frame)
        self.frames += 1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._writer.release()
        if exc_type is None and self.frames and shutil.disk_usage(self.path.parent).free < _FULL_BELOW:
            # OpenCV reports no write error: a disk left this close to full has cut the video short
            written = self._temporary.stat().st_size if self._temporary.exists() else 0
            self._temporary.unlink(missing_ok=True)
            raise disk_full_error(OSError(errno.ENOSPC, "No space left on device"), self.path, written=written)
        if exc_type is None and self.frames:
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(self._temporary, 0o666 & ~mask)  # mkstemp made it owner-only
            os.replace(self._temporary, self.path)
        else:
            self._temporary.unlink(missing_ok=True)
