"""Datasets by name: every command reads its images through :func:`load_dataset`.

``synthetic`` (the default) renders the embedded dataset offline. The others read a copy the user
points at with ``data.root`` (``--root``):

* ``cfee``: CFEE_Database_230 (:mod:`cfer.data.cfee`);
* ``rafdb``: RAF-DB, its basic and/or compound set (:mod:`cfer.data.rafdb`);
* ``rafce``: RAF-CE (:mod:`cfer.data.rafdb`);
* ``folder``: a folder per class (:mod:`cfer.data.folders`);
* ``csv``: a CSV manifest ``path,label[,subject][,valence,arousal][,partition][,AUxx...]``.

A new source is one function registered in :data:`SOURCES`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cfer.data.cfee import read_cfee, read_prefix_map
from cfer.data.dataset import FaceExpressionDataset
from cfer.data.folders import read_folder, read_manifest_csv
from cfer.data.images import DEFAULT_MAX_PIXELS
from cfer.data.rafdb import read_rafce, read_rafdb
from cfer.data.reading import OnBadFile, ReadOptions, cache_path
from cfer.data.splits import SplitPolicy
from cfer.data.synthetic import SyntheticConfig, SyntheticFaces
from cfer.registry import Registry

__all__ = ["DataConfig", "SOURCES", "load_dataset", "register_source"]


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and at which size."""

    source: str = "synthetic"  # a name in SOURCES: synthetic (embedded, offline), cfee, rafdb, rafce, folder, csv
    root: str | None = None  # the dataset's folder (the CSV file for source "csv"); not for "synthetic"
    prefix_map: str | None = None  # CSV of file prefix -> category name, for the real CFEE release
    size: int = 64  # images are rendered, or resized, to size x size pixels
    subjects: int = 230  # synthetic identities (source "synthetic")
    seed: int = 0  # synthetic dataset seed (source "synthetic")
    samples_per_category: int = 1  # synthetic images per (subject, category) pair
    compound_deviation: float = 0.0  # synthetic: 0 to 1, how far compounds stray from their prototypical AUs
    cache_dir: str | None = None  # folder for the decoded uint8 tensors; None keeps them in memory only
    variant: str = "aligned"  # RAF-DB / RAF-CE images: "aligned" or "original"
    on_bad_file: OnBadFile = "skip"  # a damaged file: "skip" (left out, listed in skipped.csv) or "error"
    max_image_pixels: int = DEFAULT_MAX_PIXELS  # larger images are refused (JPEGs count at their reduced size)
    # a dataset with neither subjects nor an official split must ask for "image" (a person may then be on both sides)
    split: SplitPolicy = "auto"  # auto: the official train/test split if any (RAF-DB), else subject-wise folds


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
        compound_deviation=config.compound_deviation,
    )
    return SyntheticFaces(synthetic, cache_dir=config.cache_dir)


@register_source("cfee")
def _cfee(config: DataConfig, categories: Sequence[str]) -> FaceExpressionDataset:
    root = _root(config, "the CFEE_Database_230 folder")
    prefix_map = read_prefix_map(config.prefix_map) if config.prefix_map else None
    cache = cache_path(config.cache_dir, "cfee", root, config.size)
    dataset = read_cfee(root, size=config.size, categories=categories, cache=cache,
                        prefix_map=prefix_map, skip_invalid=prefix_map is not None, on_bad_file=config.on_bad_file)
    return dataset.select_classes(categories)


@register_source("rafdb")
def _rafdb(config: DataConfig, categories: Sequence[str]) -> FaceExpressionDataset:
    return read_rafdb(_root(config, "the RAF-DB folder (holding basic/ and compound/)"), categories,
                      _read_options(config), variant=config.variant)


@register_source("rafce")
def _rafce(config: DataConfig, categories: Sequence[str]) -> FaceExpressionDataset:
    return read_rafce(_root(config, "the RAF-CE folder"), categories, _read_options(config), variant=config.variant)


@register_source("folder")
def _folder(config: DataConfig, categories: Sequence[str]) -> FaceExpressionDataset:
    return read_folder(_root(config, "a folder with one sub-folder per class"), categories, _read_options(config))


@register_source("csv")
def _csv(config: DataConfig, categories: Sequence[str]) -> FaceExpressionDataset:
    return read_manifest_csv(_root(config, "the CSV manifest file"), categories, _read_options(config))


def _root(config: DataConfig, what: str) -> str:
    if config.root is None:
        raise ValueError(f"data.source is {config.source!r} but data.root is not set: pass --root (or --set "
                         f"data.root=...) with {what}")
    return config.root


def _read_options(config: DataConfig) -> ReadOptions:
    return ReadOptions(size=config.size, on_bad_file=config.on_bad_file, cache_dir=config.cache_dir,
                       max_image_pixels=config.max_image_pixels)


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
