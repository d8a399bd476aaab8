"""Decoding one image file into RGB pixels, whatever its mode, and saying why when it cannot.

Every reader of real photos (CFEE, RAF-DB, folders, CSV manifests, ``cfer preprocess``) decodes
through :func:`decode_image`, so a file is judged the same way everywhere:

* every format listed in :data:`IMAGE_SUFFIXES` that PIL reads (JPEG, PNG, GIF, BMP, WebP, TIFF);
  an animated GIF, WebP or PNG gives its first frame (``cfer predict`` reads every frame, as a video's);
* grayscale, palette, CMYK, RGBA and 16-bit images load, converted to 8-bit RGB (16-bit values
  are scaled by 255 / 65535, not clipped; an alpha channel is dropped);
* a zero-byte file, a file that is not an image (a text file named ``.jpg``), a truncated or
  corrupt file raise :class:`BadImageError` with the reason;
* a very large image is decoded at a reduced scale when the format allows it (JPEG's DCT scaling
  gives at most 1/8), and refused with a :class:`BadImageError` when even that would hold more
  than ``max_pixels`` pixels in memory.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["ANIMATED_SUFFIXES", "DEFAULT_MAX_PIXELS", "IMAGE_SUFFIXES", "BadImageError", "decode_image", "display_path",
           "is_animated", "is_image_file", "pil_to_rgb"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
"""File extensions read as images (any case)."""

ANIMATED_SUFFIXES = frozenset({".gif", ".webp", ".png"})
"""Image extensions whose files may hold several frames (animated GIF, WebP, APNG)."""

DEFAULT_MAX_PIXELS = 64_000_000
"""The most pixels one image may hold once decoded (reduced JPEG decoding counts at its reduced size)."""

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


class BadImageError(ValueError):
    """A file cannot be used as an image; ``reason`` says why in a few words."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{display_path(path)}: {reason}")
        self.path = display_path(path)
        self.reason = reason


def display_path(path: str | Path) -> str:
    """The path as printable text, even when its bytes are not UTF-8 (shown as ``\\xNN`` escapes)."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def is_image_file(path: Path) -> bool:
    """Whether ``path`` is a visible file with an image extension (hidden ``.*`` files are not)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def is_animated(path: str | Path) -> bool:
    """Whether ``path`` is an image file of more than one frame (an unreadable file is not)."""
    if Path(path).suffix.lower() not in ANIMATED_SUFFIXES:
        return False
    try:
        with Image.open(path) as image:
            return bool(getattr(image, "is_animated", False))
    except (OSError, SyntaxError, ValueError):  # UnidentifiedImageError is an OSError
        return False


def decode_image(path: str | Path, size: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Reads an image file as 8-bit RGB, optionally center-cropped to a square and resized.

    Args:
        path: The file.
        size: Side of the square output: the largest centered square is cropped, then resized
            (bilinear, antialiased); None keeps the image as it is.
        max_pixels: The most pixels the decoded image may hold.

    Returns:
        uint8 pixels, shape (H, W, 3); (size, size, 3) with ``size``.

    Raises:
        BadImageError: If the file is empty, not an image, truncated or corrupt, or too large.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise BadImageError(path, "empty file (0 bytes)")
        with warnings.catch_warnings():
            # cfer applies its own limit below, after reduced decoding
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                rgb = _to_rgb(path, image, size, max_pixels)
    except BadImageError:
        raise
    except UnidentifiedImageError:
        raise BadImageError(path, "not an image (no known image format; is it a text or other file?)") from None
    except Image.DecompressionBombError as error:
        raise BadImageError(path, f"too large to decode safely ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise BadImageError(path, f"truncated or corrupt image ({error})") from None
    if size is not None:
        rgb = _square(rgb, size)
    return np.array(rgb, dtype=np.uint8)


def _to_rgb(path: Path, image: Image.Image, size: int | None, max_pixels: int) -> Image.Image:
    """Decodes ``image`` (reduced when it helps) and converts it to 8-bit RGB."""
    if size is not None and image.format == "JPEG":
        # DCT-domain downscaling: keeps both sides >= size, at most 8x smaller, never decodes full size
        image.draft("RGB", (size, size))
    width, height = image.size
    if width * height > max_pixels:
        raise BadImageError(
            path, f"{width}x{height} pixels is over the limit of {max_pixels:,} (data.max_image_pixels); "
            "downscale the file, or raise the limit if the memory allows"
        )
    image.load()  # decode now, so that a truncated file fails here
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        scale = 255.0 / 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 1.0
        gray = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        scale = 255.0 if values.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), mode="L").convert("RGB")
    return pil_to_rgb(image)


def pil_to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit image of any PIL mode as RGB; a palette's transparency goes through RGBA, then is dropped."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # PIL warns when a palette with transparency goes straight to RGB
    return image.convert("RGB")


def _square(rgb: Image.Image, size: int) -> Image.Image:
    # crop before resizing: resize(box=...) would let the antialiasing filter pull in pixels from outside the square
    width, height = rgb.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    rgb = rgb.crop((left, top, left + side, top + side))
    return rgb if side == size else rgb.resize((size, size), Image.Resampling.BILINEAR)
