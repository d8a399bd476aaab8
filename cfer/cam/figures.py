"""Figures of class activation maps: each face beside its maps, overlaid with pytorch-grad-cam's
``show_cam_on_image``, every cell labelled with the class it explains."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
from matplotlib.figure import Figure
from pytorch_grad_cam.utils.image import show_cam_on_image
from torch import Tensor

from cfer.io import save_figure

__all__ = ["overlay", "plot_map_grid", "plot_similarity"]


def overlay(image: np.ndarray | Tensor, cam: np.ndarray, display_size: int = 128) -> np.ndarray:
    """A map drawn over its image as a jet heatmap, both enlarged for display.

    Args:
        image: (3, H, W) uint8 RGB image.
        cam: (H, W) map in [0, 1].
        display_size: Side in pixels of the result; small images are enlarged bilinearly.

    Returns:
        (display_size, display_size, 3) uint8 RGB.
    """
    rgb = _display_image(image, display_size)
    heat = cv2.resize(np.asarray(cam, dtype=np.float32), (display_size, display_size), interpolation=cv2.INTER_LINEAR)
    return show_cam_on_image(rgb, np.clip(heat, 0.0, 1.0), use_rgb=True, image_weight=0.55)


def plot_map_grid(
    images: np.ndarray | Tensor,
    maps: Sequence[Sequence[np.ndarray | None]],
    cell_labels: Sequence[Sequence[str]],
    row_labels: Sequence[str],
    path: str | Path,
    title: str = "",
    display_size: int = 128,
) -> Path:
    """Saves a grid: one row per image, the image first, then its maps; as PNG, atomically.

    The cells are pasted into one mosaic drawn as a single image, with each label in a band above
    its cell: a grid of a hundred cells then costs one image to draw instead of a hundred axes.

    Args:
        images: (R, 3, H, W) uint8 RGB images.
        maps: R rows of cells, each an (H, W) map in [0, 1], or None for a class the model has no
            output for (drawn as the greyed image, labelled "no output").
        cell_labels: R rows of labels, one per cell: the class each map explains, and any score.
        row_labels: R labels of the images (e.g. their category).
        path: Destination PNG.
        title: Figure title.
        display_size: Pixels per cell side.

    Returns:
        The path written.
    """
    rows = len(maps)
    columns = 1 + max((len(row) for row in maps), default=0)
    band = 40  # pixels above each cell for three lines of label
    characters = max(12, display_size // 5)  # label characters per line at 7 points
    gap = 4
    cell_height, cell_width = display_size + band, display_size + gap
    mosaic = np.ones((rows * cell_height, columns * cell_width - gap, 3), dtype=np.float32)
    labels: list[tuple[float, float, str, bool]] = []  # x, y, text, bold
    for row in range(rows):
        top = row * cell_height + band
        face = _display_image(images[row], display_size)
        mosaic[top:top + display_size, :display_size] = face
        labels.append((display_size / 2, top - 2, _wrap(row_labels[row], characters), True))
        for cell, cam in enumerate(maps[row]):
            left = (cell + 1) * cell_width
            if cam is None:
                grey = face.mean(-1, keepdims=True).repeat(3, -1)
                tile = 0.45 + 0.3 * grey
                labels.append((left + display_size / 2, top + display_size / 2, "no output\nfor this class", False))
            else:
                tile = overlay(images[row], cam, display_size).astype(np.float32) / 255.0
            mosaic[top:top + display_size, left:left + display_size] = tile
            labels.append((left + display_size / 2, top - 2, _wrap(cell_labels[row][cell], characters), False))
    dpi = 100
    title_height = 24 if title else 0
    height, width = mosaic.shape[0] + title_height, mosaic.shape[1]
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    axis = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    axis.imshow(mosaic, extent=(0, width, mosaic.shape[0], 0), interpolation="nearest")
    axis.set_xlim(0, width)
    axis.set_ylim(mosaic.shape[0], -title_height)
    axis.axis("off")
    for x, y, text, bold in labels:
        # Labels sit on the band's bottom edge, except the "no output" note centred in its cell.
        anchor = "center" if text.startswith("no output") else "bottom"
        axis.text(x, y, text, ha="center", va=anchor, fontsize=7, fontweight="bold" if bold else "normal")
    if title:
        axis.text(width / 2, -title_height / 2, title, ha="center", va="center", fontsize=9)
    # PNG's fastest compression: the mosaic is large, and the default level costs seconds per grid.
    return save_figure(figure, path, dpi=dpi, bbox_inches=None, pil_kwargs={"compress_level": 1})


def plot_similarity(per_compound: Mapping[str, Mapping[str, float | None]], path: str | Path,
                    metric: str = "pearson", title: str = "") -> Path:
    """Saves a bar chart: per compound, its map's similarity to its components vs to other basics.

    Args:
        per_compound: ``summarize_similarity(...)["per_compound"]``.
        path: Destination PNG.
        metric: ``"pearson"`` or ``"iou"``.
        title: Figure title.

    Returns:
        The path written.
    """
    names = list(per_compound)
    components = [_number(per_compound[name][f"{metric}_components"]) for name in names]
    others = [_number(per_compound[name][f"{metric}_others"]) for name in names]
    positions = np.arange(len(names))
    figure = Figure(figsize=(1.0 + 0.55 * len(names), 3.6))
    axis = figure.subplots()
    axis.bar(positions - 0.2, components, 0.4, label="its two basic components")
    axis.bar(positions + 0.2, others, 0.4, label="the other basic classes")
    axis.set_xticks(positions, [name.replace("_", " ") for name in names], rotation=60, ha="right", fontsize=8)
    axis.set_ylabel("Pearson r of maps" if metric == "pearson" else "IoU of top pixels")
    axis.axhline(0.0, color="black", linewidth=0.6)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8, title="compound map vs the map of", title_fontsize=8)
    axis.set_title(title or f"similarity of each compound's map ({metric})", fontsize=9)
    figure.tight_layout()
    return _save(figure, path)


def _wrap(label: str, characters: int) -> str:
    """Underscores to spaces, and each line of the label wrapped to fit its cell."""
    lines = label.replace("_", " ").split("\n")
    return "\n".join(wrapped for line in lines for wrapped in textwrap.wrap(line, characters) or [""])


def _number(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _display_image(image: np.ndarray | Tensor, display_size: int) -> np.ndarray:
    """(3, H, W) uint8 to (display_size, display_size, 3) float RGB in [0, 1]."""
    array = image.numpy() if isinstance(image, Tensor) else np.asarray(image)
    rgb = np.ascontiguousarray(array.transpose(1, 2, 0)).astype(np.float32) / 255.0
    return cv2.resize(rgb, (display_size, display_size), interpolation=cv2.INTER_LINEAR).clip(0.0, 1.0)


def _save(figure: Figure, path: str | Path) -> Path:
    # A bare Figure (no pyplot) keeps no global state and leaves a notebook's backend alone.
    return save_figure(figure, path, dpi=100)
