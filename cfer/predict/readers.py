"""What ``cfer predict`` reads: images in any form, folders of them, and video files (with OpenCV).

* :func:`as_rgb` turns a PIL image, a numpy array or a path into ``(H, W, 3)`` uint8 RGB; a file is
  decoded by :func:`cfer.data.images.decode_image`, so a bad one raises the same
  :class:`~cfer.data.images.BadImageError` as in training;
* :func:`collect_inputs` expands folders (recursively) into their image and video files, and records
  what it cannot use (a missing path, a file that is neither) in a :class:`~cfer.data.reading.SkipLog`;
* :class:`VideoReader` yields RGB frames with their index and time, and raises :class:`BadVideoError`
  for a file OpenCV cannot open or decode; an animated image (GIF, WebP, APNG) is read as a video, with
  PIL, so that ``cfer predict`` predicts every frame of it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import cv2
import numpy as np
from PIL import Image, ImageSequence

from cfer.data.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, decode_image, display_path, is_animated, pil_to_rgb
from cfer.data.reading import SkipLog

logger = logging.getLogger(__name__)

__all__ = [
    "VIDEO_SUFFIXES",
    "BadVideoError",
    "ImageInput",
    "MediaFile",
    "VideoFrame",
    "VideoReader",
    "as_rgb",
    "collect_inputs",
]

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv"})
"""File extensions read as videos (any case)."""

ImageInput = Image.Image | np.ndarray | str | Path
"""An image: PIL, a numpy array (``(H, W)`` gray or ``(H, W, 3|4)`` RGB(A), uint8 or float in [0, 1]),
or an image file's path."""


class BadVideoError(ValueError):
    """A file cannot be read as a video; ``reason`` says why in a few words."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{display_path(path)}: {reason}")
        self.path = display_path(path)
        self.reason = reason


@dataclass(frozen=True)
class MediaFile:
    """One input file of ``cfer predict``."""

    path: Path
    kind: Literal["image", "video"]


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame."""

    index: int  # 0-based position in the file
    time: float | None  # seconds from the start; None when the file declares no frame rate
    pixels: np.ndarray  # (H, W, 3) uint8 RGB


def as_rgb(image: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """An image as ``(H, W, 3)`` uint8 RGB.

    Numpy arrays are taken as RGB (an OpenCV frame is BGR: ``cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)``);
    float arrays with values in [0, 1] are scaled to 0..255.

    Args:
        image: See :data:`ImageInput`.
        max_pixels: The most pixels an image file may hold once decoded.

    Raises:
        BadImageError: If a file cannot be decoded (empty, not an image, truncated, too large).
        FileNotFoundError: If a path does not exist.
        ValueError: If an array does not have an image's shape.
    """
    if isinstance(image, (str, Path)):
        if not Path(image).is_file():
            raise FileNotFoundError(f"image {display_path(image)} does not exist")
        return decode_image(image, None, max_pixels)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4), got shape {pixels.shape}")
    pixels = pixels[..., :3]
    if pixels.dtype != np.uint8:
        values = pixels.astype(np.float64)
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        pixels = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(pixels)


def collect_inputs(paths: Iterable[str | Path], skips: SkipLog) -> list[MediaFile]:
    """The image and video files named by ``paths``, folders searched recursively, in order, without repeats.

    Args:
        paths: Files and folders.
        skips: Where a missing path or a named file that is neither an image nor a video is recorded.

    Returns:
        The files; hidden ones (``.*``) and files of other types inside folders are left out (counted in the log).
    """
    found: dict[Path, MediaFile] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p, path))
            media = [file for file in (_media(p) for p in files) if file is not None]
            if len(media) < len(files):
                logger.info("%s: left out %d file(s) that are not images or videos", display_path(path),
                            len(files) - len(media))
            found.update((file.path, file) for file in media)
        elif path.is_file():
            file = _media(path)
            if file is None:
                skips.add(path, f"neither an image ({', '.join(sorted(IMAGE_SUFFIXES))}) nor a video "
                          f"({', '.join(sorted(VIDEO_SUFFIXES))}) by its extension")
            else:
                found.setdefault(file.path, file)
        else:
            skips.add(path, "file is missing (no such file or folder)")
    return list(found.values())


def _media(path: Path) -> MediaFile | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return MediaFile(path, "video" if is_animated(path) else "image")
    if suffix in VIDEO_SUFFIXES:
        return MediaFile(path, "video")
    return None


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


class VideoReader:
    """The frames of a video file, decoded by OpenCV, as RGB; use it in a ``with`` block.

    An image file (an animated GIF, WebP or PNG) is decoded by PIL instead, frame by frame; its
    frame rate comes from the first frame's duration.

    Args:
        path: The video file, or an animated image.
        stride: Yield every ``stride``-th frame (1: all).

    Attributes:
        fps: Frames per second the file declares (0 when unknown).
        declared_frames: Frame count the file declares (0 when unknown; an estimate for some containers).
        frames_read: Frames decoded so far (all of them, not only the yielded ones).

    Raises:
        BadVideoError: If OpenCV cannot open the file; iterating raises it if no frame can be decoded.
        ValueError: If ``stride`` is below 1.
    """

    def __init__(self, path: str | Path, stride: int = 1) -> None:
        if stride < 1:
            raise ValueError(f"stride must be at least 1, got {stride}")
        self.path, self.stride = Path(path), stride
        if not self.path.is_file():
            raise BadVideoError(self.path, "file is missing")
        if self.path.stat().st_size == 0:
            raise BadVideoError(self.path, "empty file (0 bytes)")
        self.frames_read = 0
        self._capture: cv2.VideoCapture | None = None
        self._image: Image.Image | None = None
        if self.path.suffix.lower() in IMAGE_SUFFIXES:
            self._open_image()
        else:
            self._open_video()

    def _open_video(self) -> None:
        self._capture = cv2.VideoCapture(str(self.path))
        if not self._capture.isOpened():
            self._capture.release()
            raise BadVideoError(self.path, "OpenCV cannot open it as a video (not a video, damaged, or a codec "
                                "it lacks)")
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.declared_frames = max(0, int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))

    def _open_image(self) -> None:
        try:
            self._image = Image.open(self.path)
        except (OSError, SyntaxError, ValueError) as error:  # UnidentifiedImageError is an OSError
            raise BadVideoError(self.path, f"not a readable image ({error})") from None
        try:
            self.declared_frames = int(getattr(self._image, "n_frames", 1))
        except (OSError, SyntaxError, ValueError, EOFError):  # counting seeks every frame: a cut file fails
            self.declared_frames = 0
        duration = float(self._image.info.get("duration") or 0)  # milliseconds per frame
        self.fps = 1000.0 / duration if duration > 0 else 0.0

    def __iter__(self) -> Iterator[VideoFrame]:
        for index, pixels in enumerate(self._decoded()):
            self.frames_read += 1
            if index % self.stride == 0:
                time = index / self.fps if self.fps > 0 else None
                yield VideoFrame(index, time, pixels)
        if self.frames_read == 0:
            raise BadVideoError(self.path, "no frame could be decoded (empty or damaged video)")

    def _decoded(self) -> Iterator[np.ndarray]:
        """Every frame as ``(H, W, 3)`` uint8 RGB, until the file ends or a frame cannot be decoded."""
        if self._image is not None:
            try:
                for frame in ImageSequence.Iterator(self._image):
                    yield np.asarray(pil_to_rgb(frame))
            except (OSError, SyntaxError, ValueError, EOFError):  # a cut file: the frames before it are kept
                pass
            return
        while True:
            ok, frame = self._capture.read()
            if not ok or frame is None:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    @property
    def truncated(self) -> bool:
        """Whether decoding stopped well short of the declared frame count (a damaged or cut file)."""
        return self.declared_frames > 0 and self.frames_read < 0.9 * self.declared_frames

    def close(self) -> None:
        """Releases the file; idempotent."""
        if self._capture is not None:
            self._capture.release()
        if self._image is not None:
            self._image.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
