"""Classifiers fitted on one episode's support features: nearest prototype, or a linear probe.

Both work on frozen-backbone features (see :mod:`cfer.fewshot.features`). A new one subclasses
:class:`EpisodeClassifier`, implements :meth:`~EpisodeClassifier.fit` and
:meth:`~EpisodeClassifier.logits`, and registers itself with :func:`register_episode_classifier`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cfer.core.head_training import fit_head
from cfer.registry import Registry

__all__ = [
    "EPISODE_CLASSIFIERS",
    "EpisodeClassifier",
    "LinearProbe",
    "PrototypeClassifier",
    "create_episode_classifier",
    "register_episode_classifier",
]


class EpisodeClassifier(ABC):
    """Fits on an episode's support set, then scores its queries."""

    @abstractmethod
    def fit(self, support_features: Tensor, support_labels: Tensor) -> None:
        """Learns the episode's classes.

        Args:
            support_features: Shape (n_support, feature_dim).
            support_labels: Episode-local labels in [0, n_way), shape (n_support,); every label
                occurs at least once.
        """

    @abstractmethod
    def logits(self, query_features: Tensor) -> Tensor:
        """Class scores of the queries, shape (n_query_total, n_way), for features (n_query_total, feature_dim)."""

    def predict(self, query_features: Tensor) -> Tensor:
        """Episode-local predicted labels, shape (n_query_total,)."""
        return self.logits(query_features).argmax(dim=1)


class PrototypeClassifier(EpisodeClassifier):
    """Nearest class mean: Snell, Swersky & Zemel (2017), "Prototypical Networks for Few-shot Learning".

    Scores are negative squared Euclidean distances to the class means of the support features.
    With ``normalize``, features are L2-normalised first (the "L2N" of Wang et al. 2019,
    SimpleShot), which makes the rule insensitive to the overall scale of a backbone's features.

    Args:
        normalize: L2-normalise support and query features.
    """

    def __init__(self, normalize: bool = True) -> None:
        self.normalize = normalize
        self.prototypes: Tensor | None = None

    def _prepare(self, features: Tensor) -> Tensor:
        return F.normalize(features, dim=1) if self.normalize else features

    def fit(self, support_features: Tensor, support_labels: Tensor) -> None:
        features = self._prepare(support_features)
        n_way = int(support_labels.max()) + 1
        self.prototypes = torch.stack([features[support_labels == c].mean(0) for c in range(n_way)])

    def logits(self, query_features: Tensor) -> Tensor:
        if self.prototypes is None:
            raise RuntimeError("fit the classifier on a support set first")
        return -torch.cdist(self._prepare(query_features), self.prototypes).pow(2)


class LinearProbe(EpisodeClassifier):
    """A linear (softmax regression) layer fitted to the support features of each episode.

    Full-batch gradient descent (:func:`cfer.core.head_training.fit_head` with plain SGD) on the
    cross-entropy plus ``weight_decay / 2 · |W|^2``. The layer starts from the prototype rule
    (weights ``2 · prototype``, bias ``-|prototype|^2``, which ranks classes exactly as negative
    squared distance), so the steps refine a sensible classifier rather than a random one.

    Args:
        steps: Gradient steps per episode.
        lr: Step size; with L2-normalised features the loss is smooth enough for steps near 1.
        weight_decay: L2 penalty on the weights, against fitting one shot per class exactly.
        normalize: L2-normalise features first, as :class:`PrototypeClassifier`.
    """

    def __init__(self, steps: int = 100, lr: float = 0.5, weight_decay: float = 1e-3, normalize: bool = True) -> None:
        self.steps = steps
        self.lr = lr
        self.weight_decay = weight_decay
        self.normalize = normalize
        self.layer: nn.Linear | None = None

    def _prepare(self, features: Tensor) -> Tensor:
        return F.normalize(features, dim=1) if self.normalize else features

    def fit(self, support_features: Tensor, support_labels: Tensor) -> None:
        features = self._prepare(support_features).float()
        n_way = int(support_labels.max()) + 1
        prototypes = torch.stack([features[support_labels == c].mean(0) for c in range(n_way)])
        layer = nn.Linear(features.shape[1], n_way)
        with torch.no_grad():
            layer.weight.copy_(2 * prototypes)
            layer.bias.copy_(-prototypes.pow(2).sum(1))
        optimizer = torch.optim.SGD([{"params": [layer.weight], "weight_decay": self.weight_decay},
                                     {"params": [layer.bias], "weight_decay": 0.0}], lr=self.lr)
        with torch.enable_grad():  # episodes are scored under no_grad
            fit_head(layer, features, support_labels, optimizer, self.steps)
        self.layer = layer

    @torch.no_grad()
    def logits(self, query_features: Tensor) -> Tensor:
        if self.layer is None:
            raise RuntimeError("fit the classifier on a support set first")
        return self.layer(self._prepare(query_features).float())


EPISODE_CLASSIFIERS: Registry[Callable[..., EpisodeClassifier]] = Registry("episode classifier")
"""Episode classifiers by name: ``'prototype'`` and ``'linear'``."""


def register_episode_classifier(name: str, factory: Callable[..., EpisodeClassifier]) -> None:
    """Makes an episode classifier available by name.

    Args:
        name: Registry key.
        factory: Callable ``(**kwargs) -> EpisodeClassifier``.

    Raises:
        ValueError: If ``name`` is already registered.
    """
    EPISODE_CLASSIFIERS.register(name, factory)


register_episode_classifier("prototype", PrototypeClassifier)
register_episode_classifier("linear", LinearProbe)


def create_episode_classifier(name: str, **kwargs: object) -> EpisodeClassifier:
    """Builds a registered episode classifier.

    Args:
        name: One of :data:`EPISODE_CLASSIFIERS`.
        **kwargs: Forwarded to its constructor.

    Returns:
        A fresh, unfitted classifier.

    Raises:
        KeyError: If ``name`` is unknown; the message lists the known names.
    """
    return EPISODE_CLASSIFIERS[name](**kwargs)
