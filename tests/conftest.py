"""Fixtures shared by the test packages."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn


class LookupModel(nn.Module):
    """Stand-in model: input ``x[:, 0]`` is a sample id; the logits are row ``id`` of a table."""

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the model a device
        self.calls = 0
        self.modes: list[bool] = []

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        self.modes.append(self.training)
        return self.table[x[:, 0].long()] + 0 * self.anchor


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker takes one core: its torch runs one intra-op thread."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a module: tiny models on a shared CPU run far faster without threads competing."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def lookup_model() -> type[LookupModel]:
    """The class of a stand-in model whose logits are looked up by sample id (``x[:, 0]``)."""
    return LookupModel


# --- fake real-data trees: synthetic faces written in the layouts of RAF-DB, RAF-CE, folders, CSV ----------


def _faces(subjects: int, size: int, categories: tuple[str, ...]):
    from cfer.data.synthetic import SyntheticConfig, SyntheticFaces

    return SyntheticFaces(SyntheticConfig(subjects=subjects, size=size, categories=categories))


def _save(pixels, path, quality: int = 95) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(path, quality=quality)


def write_fake_rafdb(root, subjects: int = 6, size: int = 32, test_subjects: int = 2, original: bool = False):
    """A RAF-DB tree: basic (7 classes) and compound (11 classes) sets of synthetic faces, RAF naming."""
    from cfer.taxonomy import RAFDB_BASIC, RAFDB_COMPOUND

    for subset, labels, digits in (("basic", RAFDB_BASIC, (5, 4)), ("compound", RAFDB_COMPOUND, (4, 4))):
        label_of = {name: label for label, name in labels.items()}
        faces = _faces(subjects, size, tuple(labels.values()))
        lines, counters = [], {"train": 0, "test": 0}
        for index in range(len(faces)):
            partition = "test" if int(faces.subject_ids[index]) >= subjects - test_subjects else "train"
            counters[partition] += 1
            name = f"{partition}_{counters[partition]:0{digits[partition == 'test']}d}"
            _save(faces.images[index], root / subset / "Image" / "aligned" / f"{name}_aligned.jpg")
            if original:
                _save(faces.images[index], root / subset / "Image" / "original" / f"{name}.jpg")
            lines.append(f"{name}.jpg {label_of[faces.classes[int(faces.targets[index])]]}")
        (root / subset / "EmoLabel").mkdir(parents=True, exist_ok=True)
        (root / subset / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def fake_rafdb():
    """``fake_rafdb(root, subjects=6, size=32, test_subjects=2, original=False)`` writes a RAF-DB tree."""
    return write_fake_rafdb


@pytest.fixture
def fake_folder():
    """``fake_folder(root, categories, subjects=3, size=32)`` writes ``root/<category>/<n>.png``."""
    def write(root, categories, subjects: int = 3, size: int = 32):
        faces = _faces(subjects, size, tuple(categories))
        for index in range(len(faces)):
            name = faces.classes[int(faces.targets[index])]
            _save(faces.images[index], root / name / f"{index:04d}.png")
        return root
    return write


# --- Ray ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray of 2 CPUs for every test that needs one: starting Ray and warming its workers takes seconds."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()
