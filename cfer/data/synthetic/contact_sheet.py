"""A labelled grid of subjects x categories, to look at what the renderer draws."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cfer.data.synthetic.renderer import FaceRenderer
from cfer.io import save_figure
from cfer.taxonomy import CATEGORY_NAMES, get_category


def contact_sheet(
    path: str | Path,
    subjects: Sequence[int] = (0, 1, 2, 3),
    categories: Sequence[str] = CATEGORY_NAMES,
    size: int = 96,
    seed: int = 0,
) -> Path:
    """Renders one image per (subject, category) and saves them as a labelled PNG grid.

    Args:
        path: Destination PNG; written atomically.
        subjects: Subject ids, one row each.
        categories: Category names or ids, one column each.
        size: Side of each rendered face in pixels.
        seed: Dataset seed.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [get_category(c).name for c in categories]
    batch = FaceRenderer(size, seed).render([(s, name, 0) for s in subjects for name in names])
    images = batch.images.reshape(len(subjects), len(names), 3, size, size)
    figure, axes = plt.subplots(
        len(subjects), len(names), figsize=(1.1 * len(names), 1.25 * len(subjects) + 0.6), squeeze=False
    )
    for row, subject in enumerate(subjects):
        for column, name in enumerate(names):
            axis = axes[row, column]
            axis.imshow(np.transpose(images[row, column], (1, 2, 0)))
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                kind = get_category(name).kind
                axis.set_title(get_category(name).display_name.replace(" ", "\n", 1), fontsize=7,
                               color={"compound": "tab:red", "basic": "tab:blue"}.get(kind, "black"))
            if column == 0:
                axis.set_ylabel(f"subject {subject}", fontsize=7)
    figure.tight_layout(pad=0.3)
    return save_figure(figure, path, dpi=80, bbox_inches=None)
