"""Standard episodic evaluation: N-way K-shot accuracy of a frozen backbone, with a 95% interval.

Each episode draws ``n_way`` classes, ``n_shot`` support and ``n_query`` query images per class
(:class:`~cfer.fewshot.sampler.EpisodeSampler`), fits an episode classifier on the support features
(:mod:`cfer.fewshot.classifiers`) and scores the queries. The accuracy is reported as
``mean ± 1.96 · std / sqrt(episodes)`` over the episodes (:func:`~cfer.fewshot.stats.mean_ci`).
Features are computed once per image (:mod:`cfer.fewshot.features`), so 600 episodes cost
milliseconds each.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cfer.fewshot.classifiers import create_episode_classifier
from cfer.fewshot.features import FeatureSet
from cfer.fewshot.sampler import EpisodeSampler, TooFewPolicy
from cfer.fewshot.stats import mean_ci
from cfer.taxonomy import BASIC, COMPOUND

__all__ = ["CLASS_POOLS", "EpisodicConfig", "class_pool", "evaluate_episodes"]

logger = logging.getLogger(__name__)

CLASS_POOLS: dict[str, tuple[str, ...]] = {
    "compound": COMPOUND,  # the 15 compound expressions only: the few-shot question of the paper
    "basic": BASIC,
    "mixed": BASIC + COMPOUND,  # episodes may mix basic and compound classes
}
"""Named sets of classes that episodes draw from."""


def class_pool(name: str, classes: Sequence[str]) -> list[int]:
    """Indices into ``classes`` of the pool ``name`` (classes absent from ``classes`` are left out).

    Raises:
        KeyError: If ``name`` is unknown; the message lists the known pools.
    """
    if name not in CLASS_POOLS:
        raise KeyError(f"unknown class pool {name!r}; known: {sorted(CLASS_POOLS)}")
    return [classes.index(c) for c in CLASS_POOLS[name] if c in classes]


@dataclass(frozen=True)
class EpisodicConfig:
    """N-way K-shot evaluation of frozen backbones on held-out subjects."""

    enabled: bool = True  # run the episodic evaluation
    n_way: int = 5  # classes per episode
    shots: list[int] = field(default_factory=lambda: [1, 5])  # K values; each is one N-way K-shot setting
    n_query: int = 10  # query images per class and episode
    episodes: int = 600  # episodes per setting (the usual 600 of the few-shot literature)
    class_pool: str = "compound"  # a name in CLASS_POOLS: "compound", "basic" or "mixed"
    subject_disjoint: bool = True  # support and query people differ within an episode
    on_too_few: TooFewPolicy = "skip"  # a class that cannot fill an episode: "error" or "skip"
    classifiers: list[str] = field(default_factory=lambda: ["prototype", "linear"])  # EPISODE_CLASSIFIERS names
    linear_steps: int = 100  # gradient steps of the per-episode linear probe
    linear_lr: float = 0.5  # step size of the per-episode linear probe
    seed: int = 0  # episodes; equal seeds give the same episodes for every backbone


def evaluate_episodes(
    features: FeatureSet,
    n_way: int,
    n_shot: int,
    n_query: int,
    episodes: int,
    classifier: str = "prototype",
    classifier_options: dict[str, Any] | None = None,
    classes: Sequence[int] | None = None,
    subject_disjoint: bool = True,
    on_too_few: TooFewPolicy = "error",
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy of one episode classifier over N-way K-shot episodes of cached features.

    Args:
        features: Frozen-backbone features of the evaluation images.
        n_way: Classes per episode.
        n_shot: Support samples per class.
        n_query: Query samples per class.
        episodes: Number of episodes.
        classifier: Name in :data:`~cfer.fewshot.classifiers.EPISODE_CLASSIFIERS`.
        classifier_options: Keyword arguments of the classifier.
        classes: Class indices episodes may draw from; None for all.
        subject_disjoint: Support and query subjects differ.
        on_too_few: ``'error'`` or ``'skip'`` for classes too small to fill an episode.
        seed: Episode seed.

    Returns:
        ``{'mean', 'ci95', 'std', 'episodes', 'n_way', 'n_shot', 'n_query', 'classifier',
        'classes'}``; ``classes`` names the classes that episodes drew from.
    """
    sampler = EpisodeSampler(features, n_way, n_shot, n_query, episodes, classes=classes,
                             subject_disjoint=subject_disjoint, on_too_few=on_too_few, seed=seed)
    accuracies = np.empty(episodes)
    with torch.no_grad():
        for index, positions in enumerate(sampler):
            episode = sampler.episodic_collate_fn([features[p] for p in positions])
            model = create_episode_classifier(classifier, **(classifier_options or {}))
            model.fit(episode.support_images, episode.support_labels)
            predictions = model.predict(episode.query_images)
            accuracies[index] = float((predictions == episode.query_labels).float().mean())
    summary = mean_ci(accuracies)
    return {
        "mean": summary.mean,
        "ci95": summary.ci95,
        "std": float(accuracies.std(ddof=1)) if episodes > 1 else 0.0,
        "episodes": episodes,
        "n_way": n_way,
        "n_shot": n_shot,
        "n_query": n_query,
        "classifier": classifier,
        "classes": [features.classes[c] for c in sampler.class_ids],
    }
