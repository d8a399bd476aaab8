"""The embedded synthetic dataset: rendered faces as an in-memory :class:`FaceExpressionDataset`."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from cfer.data.dataset import FaceExpressionDataset
from cfer.data.synthetic.affect import image_affect
from cfer.data.synthetic.renderer import FaceRenderer
from cfer.data.synthetic.subjects import RENDERED_AUS, make_subject
from cfer.taxonomy import CATEGORY_NAMES, get_category

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyntheticConfig:
    """What to render. Each (subject, category, index) key always renders the same image."""

    subjects: int = 230  # synthetic identities, as many as CFEE has
    size: int = 64  # image side in pixels, 32 to 224
    seed: int = 0  # dataset seed: subjects and nuisance follow from it
    categories: tuple[str, ...] = CATEGORY_NAMES  # category names, in CFEE order by default
    samples_per_category: int = 1  # images of each (subject, category) pair
    first_subject: int = 0  # id of the first subject; held-out sets can start after another set
    compound_deviation: float = 0.0  # 0 to 1: compounds stray from their prototypical AUs (renderer.deviate_compound)

    def cache_name(self) -> str:
        """A file name that changes whenever anything that affects the pixels changes."""
        fields = asdict(self)
        if not self.compound_deviation:  # the names of caches written before the setting stay valid
            del fields["compound_deviation"]
        digest = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
        return f"synthetic-{self.size}px-{self.subjects}s-{digest}.pt"


class SyntheticFaces(FaceExpressionDataset):
    """Procedurally rendered faces of synthetic subjects showing CFEE's 22 categories.

    Each image carries its category (``targets``, indexing ``classes``), its subject
    (``subject_ids``), the intensities of the AUs it shows (``au_intensities``, columns
    ``au_ids``) and its (valence, arousal) (``valence_arousal``; per image, from the rendered AUs, see
    :mod:`cfer.data.synthetic.affect`). ``keys``
    holds each image's ``(subject_id, cfee_id, index)``, which :meth:`region_masks` re-renders
    to get the facial regions the AUs move.

    Args:
        config: What to render; see :class:`SyntheticConfig`.
        transform: Optional callable applied to each uint8 (3, H, W) image in ``__getitem__``.
        cache_dir: If given, the rendered tensors are saved there once and loaded afterwards.

    Example:
        >>> faces = SyntheticFaces(SyntheticConfig(subjects=4, size=32, categories=("happy", "sad")))
        >>> len(faces), faces.classes
        (8, ('happy', 'sad'))
    """

    def __init__(
        self,
        config: SyntheticConfig = SyntheticConfig(),
        transform=None,
        cache_dir: str | Path | None = None,
    ) -> None:
        if config.subjects < 1 or config.samples_per_category < 1:
            raise ValueError(f"subjects and samples_per_category must be positive, got {config}")
        categories = tuple(get_category(name).name for name in config.categories)
        self.config = config
        # Keys follow from the config, so only the pixels need caching.
        self.keys = torch.tensor(_keys(config, categories), dtype=torch.int64)
        cached = Path(cache_dir) / config.cache_name() if cache_dir is not None else None
        if cached is not None and cached.exists():
            data = FaceExpressionDataset.load(cached)
        else:
            data = _render(config, categories, self.keys.tolist())
            if cached is not None:
                data.save(cached)
                logger.info("cached the synthetic dataset in %s", cached)
        super().__init__(
            images=data.images,
            targets=data.targets,
            classes=data.classes,
            subject_ids=data.subject_ids,
            au_intensities=data.au_intensities,
            au_ids=data.au_ids,
            valence_arousal=data.valence_arousal,
            transform=transform,
        )

    def region_masks(self, indices: Sequence[int]) -> np.ndarray:
        """Re-renders the facial-region masks of some images.

        Args:
            indices: Sample indices.

        Returns:
            (len(indices), len(REGIONS), H, W) float32 coverage of each region in
            :data:`cfer.data.synthetic.renderer.REGIONS`.
        """
        renderer = FaceRenderer(self.config.size, self.config.seed, self.config.compound_deviation)
        keys = [tuple(int(v) for v in self.keys[i]) for i in indices]
        return renderer.render(keys, regions=True).regions


def _keys(config: SyntheticConfig, categories: tuple[str, ...]) -> list[tuple[int, int, int]]:
    return [
        (subject, get_category(name).id, index)
        for subject in range(config.first_subject, config.first_subject + config.subjects)
        for name in categories
        for index in range(config.samples_per_category)
    ]


def _render(config: SyntheticConfig, categories: tuple[str, ...], keys: list) -> FaceExpressionDataset:
    batch = FaceRenderer(config.size, config.seed, config.compound_deviation).render(keys)
    class_index = {get_category(name).id: position for position, name in enumerate(categories)}
    targets = torch.tensor([class_index[category_id] for _, category_id, _ in keys], dtype=torch.int64)
    names = [categories[int(target)] for target in targets]
    subjects = {s: make_subject(config.seed, s) for s in {subject for subject, _, _ in keys}}
    resting = np.array([[subjects[s].resting_mouth, subjects[s].resting_brow] for s, _, _ in keys], dtype=np.float32)
    valence_arousal = torch.from_numpy(image_affect(names, RENDERED_AUS, batch.au_intensities, resting))
    return FaceExpressionDataset(
        images=torch.from_numpy(batch.images),
        targets=targets,
        classes=categories,
        subject_ids=torch.tensor([subject for subject, _, _ in keys], dtype=torch.int64),
        au_intensities=torch.from_numpy(batch.au_intensities),
        au_ids=RENDERED_AUS,
        valence_arousal=valence_arousal,
    )
