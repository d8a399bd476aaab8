"""Atomic file writes: a long run never leaves a half-written result behind.

Every writer goes to a temporary file in the destination folder and then ``os.replace`` s it into
place, which is atomic on one filesystem: readers, and a run resumed after a crash, see either the
old file or the complete new one.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "read_json", "save_figure", "write_json"]


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Calls ``write`` on a binary temp file, then moves it to ``path``.

    Args:
        path: Destination; its folder is created if needed.
        write: Writes the content to the open binary file it is given.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        # mkstemp creates owner-only files; give results the permissions a plain open() would.
        os.chmod(temp_name, 0o666 & ~_umask())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda file: file.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Writes UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any) -> Path:
    """Writes ``data`` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Reads a JSON file, naming the file if it is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it to let the run write it again") from error


def save_figure(figure: Any, path: str | Path, dpi: int = 120, bbox_inches: str | None = "tight",
                **savefig_kwargs: Any) -> Path:
    """Writes a matplotlib figure as PNG, atomically, then closes it if pyplot manages it.

    Args:
        figure: A ``matplotlib.figure.Figure`` (from pyplot or a bare ``Figure``).
        path: Destination PNG.
        dpi: Resolution.
        bbox_inches: ``"tight"`` crops to the drawn area; None keeps the figure size.
        **savefig_kwargs: Passed to ``figure.savefig`` (e.g. ``pil_kwargs``).

    Returns:
        The destination path.
    """
    try:
        return atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=dpi, bbox_inches=bbox_inches,
                                                              **savefig_kwargs))
    finally:
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:  # a bare Figure is unknown to pyplot, and closing it is a no-op
            pyplot.close(figure)
