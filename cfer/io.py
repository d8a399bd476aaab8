"""Safe file output: atomic writes, a clear error on a full disk, one run per output folder.

Every writer goes to a temporary file in the destination folder and then ``os.replace`` s it into
place, which is atomic on one filesystem: readers, and a run resumed after a crash, see either the
old file or the complete new one. A write that runs out of space (``ENOSPC``, or ``EDQUOT`` for a
quota) removes its temporary file and raises :class:`DiskFullError`, naming the file and the space
needed and free; once space is freed, the same command resumes from the files already complete.

:func:`hold_folder` locks an output folder for one run (``fcntl.flock`` on ``<folder>/.cfer.lock``):
a second run on it stops at once with :class:`FolderLockedError`, naming the holder's pid. The
kernel drops the lock when its process dies, even by ``SIGKILL``, so a killed run's folder is taken
over by the next run, which resumes it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

__all__ = ["LOCK_NAME", "DiskFullError", "FolderLockedError", "atomic_write", "atomic_write_bytes",
           "atomic_write_text", "disk_full_error", "hold_folder", "load_torch_file", "read_json", "save_figure",
           "space_error", "write_json"]

LOCK_NAME = ".cfer.lock"
"""The lock file :func:`hold_folder` keeps in a folder while a run holds it."""

_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


class DiskFullError(OSError):
    """A write ran out of disk space or quota; the message names the file and the space needed and free."""

    def __str__(self) -> str:
        return str(self.strerror)


class FolderLockedError(RuntimeError):
    """Another live process holds the output folder (see :func:`hold_folder`)."""


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None], size: int | None = None) -> Path:
    """Calls ``write`` on a binary temp file, then moves it to ``path``.

    Args:
        path: Destination; its folder is created if needed.
        write: Writes the content to the open binary file it is given.
        size: The content's size in bytes, when known, for the message of a full disk.

    Returns:
        The destination path.

    Raises:
        DiskFullError: If the disk or quota fills; nothing is left behind, ``path`` keeps its old content.
    """
    path = Path(path)
    temp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "wb") as file:
            write(file)
        # mkstemp creates owner-only files; give results the permissions a plain open() would.
        os.chmod(temp_name, 0o666 & ~_umask())
        os.replace(temp_name, path)
    except BaseException as error:
        written = _size_of(temp_name)
        if temp_name is not None:
            Path(temp_name).unlink(missing_ok=True)
        full = space_error(error)
        if full is not None:
            raise disk_full_error(full, path, size, written) from error
        raise
    return path


def space_error(error: BaseException | None) -> OSError | None:
    """The ``ENOSPC``/``EDQUOT`` error in ``error``'s chain, or None: torch.save, for one, raises a
    RuntimeError while handling it."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in _SPACE_ERRNOS:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def disk_full_error(error: OSError, path: str | Path, needed: int | None = None,
                    written: int | None = None) -> DiskFullError:
    """The :class:`DiskFullError` for ``error`` (``ENOSPC``/``EDQUOT``) met while writing ``path``.

    Args:
        error: The operating system's error.
        path: The file being written.
        needed: Bytes the whole file needs, if known.
        written: Bytes written when the disk filled, if known (a lower bound of what it needs).
    """
    path = Path(path)
    folder = next((item for item in (path, *path.parents) if item.exists()), Path("."))
    free = shutil.disk_usage(folder).free
    what = "the quota is used up" if error.errno == errno.EDQUOT else "the disk is full"
    need = (f"; it needs {_human(needed)}" if needed else
            f"; it needs more than the {_human(written)} written when the disk filled" if written else "")
    message = (f"cannot write {path}: {what} ({_human(free)} free on its filesystem{need}); free some space "
               "(or point --out at another disk) and start the same command again: finished work is reused")
    return DiskFullError(error.errno, message, str(path))


def _size_of(name: str | None) -> int:
    try:
        return os.path.getsize(name) if name is not None else 0
    except OSError:
        return 0


def _human(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda file: file.write(data), size=len(data))


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


def load_torch_file(path: str | Path, remedy: str, **kwargs: Any) -> Any:
    """``torch.load(path, weights_only=True)``, with a ValueError naming the file when it is damaged.

    Args:
        path: A file written by ``torch.save`` (a cache, a resume state, packaged weights).
        remedy: What the user should do about a damaged file, e.g. ``"delete it to rebuild the cache"``.
        **kwargs: Passed to ``torch.load`` (``map_location``, ``mmap``).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If it is not a readable, tensors-only ``torch.save`` file.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return torch.load(path, weights_only=True, **kwargs)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError ... for a damaged file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path} is not a readable torch.save file ({reason}); {remedy}") from None


# --- one run per folder --------------------------------------------------------------------------

_held: dict[Path, int] = {}  # folders this process holds, with their lock files' descriptors


@contextmanager
def hold_folder(folder: str | Path, command: str = "cfer") -> Iterator[Path]:
    """Holds ``folder`` for this process while the block runs.

    Re-entrant within one process. A folder inside one that another live process holds is refused
    too. The lock file is removed on release; one left by a killed process is taken over.

    Args:
        folder: The run's output folder; created if needed.
        command: What holds it, recorded in the lock file for the message a second run prints.

    Yields:
        The folder.

    Raises:
        FolderLockedError: If another live process holds ``folder`` or a folder above it.
    """
    folder = Path(folder).resolve()
    if folder in _held:
        yield folder
        return
    _check_ancestors(folder)
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = _lock(folder / LOCK_NAME, command)
    _held[folder] = descriptor
    try:
        yield folder
    finally:
        del _held[folder]
        Path(folder / LOCK_NAME).unlink(missing_ok=True)  # before unlocking: a waiter then locks a fresh file
        os.close(descriptor)


def _lock(path: Path, command: str = "cfer") -> int:
    """Locks ``path`` (creating it) and writes this process's name in it; returns the open descriptor."""
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise FolderLockedError(_locked_message(path)) from None
        try:
            if os.fstat(descriptor).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(descriptor)  # the holder removed the file as we opened it: lock the new one
    left = os.read(descriptor, 4096).decode("utf-8", errors="replace").strip()
    if left:
        logger.info("%s: taking over the lock left by a run that is no longer running (%s)", path.parent, left)
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps(holder).encode("utf-8"), 0)
    return descriptor


def _check_ancestors(folder: Path) -> None:
    for parent in folder.parents:
        lock = parent / LOCK_NAME
        if parent in _held or not lock.is_file():
            continue
        try:
            descriptor = os.open(lock, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderLockedError(_locked_message(lock, inside=folder)) from None
        finally:
            os.close(descriptor)


def _locked_message(lock: Path, inside: Path | None = None) -> str:
    try:
        holder = json.loads(lock.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        holder = {}
    who = (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, `{holder.get('command', 'cfer')}`, since "
           f"{holder.get('since', '?')}")
    where = f"{inside} is inside {lock.parent}, which" if inside is not None else f"{lock.parent}"
    return (f"{where} is in use by another run ({who}); wait for it to end, stop it (kill "
            f"{holder.get('pid', 'PID')}), or pass another --out")
