"""Datasets by name: every command reads its images through :func:`load_dataset`.

``synthetic`` (the default) renders the embedded dataset offline; ``cfee`` reads a copy of
CFEE_Database_230 that the user points at. A new source is one function registered in
:data:`SOURCES`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cfer.data.cfee import read_cfee, read_prefix_map
from cfer.data.dataset import FaceExpressionDataset
from cfer.data.synthetic import SyntheticConfig, SyntheticFaces
from cfer.registry import Registry

__all__ = ["DataConfig", "SOURCES", "load_dataset", "register_source"]


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and at which size."""

    source: str = "synthetic"  # a name in SOURCES: "synthetic" (embedded, offline) or "cfee"
    root: str | None = None  # the CFEE_Database_230 folder, for source "cfee"
    prefix_map: str | None = None  # CSV of file prefix -> category name, for the real CFEE release
    size: int = 64  # images are rendered, or resized, to size x size pixels
    subjects: int = 230  # synthetic identities (source "synthetic")
    seed: int = 0  # synthetic dataset seed (source "synthetic")
    samples_per_category: int = 1  # synthetic images per (subject, category) pair
    cache_dir: str | None = None  # folder for the decoded uint8 tensors; None keeps them in memory only


SourceLoader = Callable[[DataConfig, Sequence[str]], FaceExpressionDataset]
SOURCES: Registry[SourceLoader] = Registry("data source")
"""Dataset loaders by name, ``name -> callable(config, categories)``."""


def register_source(name: str) -> Callable[[SourceLoader], SourceLoader]:
    """Decorator that makes a dataset loader available by name."""
    return SOURCES.register(name)


@register_source("synthetic")
def _synthetic(config: DataConfig, categories: Sequence[str]) -> FaceExpressionDataset:
    synthetic = SyntheticConfig(
        subjects=config.subjects,
        size=config.size,
        seed=config.seed,
        categories=tuple(categories),
        samples_per_category=config.samples_per_category,
    )
    return SyntheticFaces(synthetic, cache_dir=config.cache_dir)


@register_source("cfee")
def _cfee(config: DataConfig, categories: Sequence[str]) -> FaceExpressionDataset:
    if config.root is None:
        raise ValueError("data.source is 'cfee' but data.root is not set: pass --set data.root=/path/to/CFEE_Database_230")
    prefix_map = read_prefix_map(config.prefix_map) if config.prefix_map else None
    cache = Path(config.cache_dir) / f"cfee-{config.size}px.pt" if config.cache_dir else None
    dataset = read_cfee(config.root, size=config.size, categories=categories, cache=cache,
                        prefix_map=prefix_map, skip_invalid=prefix_map is not None)
    return dataset.select_classes(categories)


def load_dataset(config: DataConfig, categories: Sequence[str]) -> FaceExpressionDataset:
    """Loads the images of ``categories`` from the configured source.

    Args:
        config: The data settings.
        categories: Category names; the returned dataset's class indices follow this order.

    Returns:
        The dataset, decoded in memory, with ``classes == tuple(categories)``.

    Raises:
        KeyError: If the source is unknown; the message lists the known ones.
    """
    return SOURCES[config.source](config, categories)
