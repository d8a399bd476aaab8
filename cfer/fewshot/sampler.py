"""N-way K-shot Q-query episodes drawn from any labelled cfer dataset.

:class:`EpisodeSampler` is a batch sampler: each item it yields is the list of sample positions
of one episode, laid out class by class (``n_shot`` support positions, then ``n_query`` query
positions, for each of the ``n_way`` classes). Given to a :class:`torch.utils.data.DataLoader` as
``batch_sampler`` with ``collate_fn=sampler.episodic_collate_fn``, every batch is one
:class:`Episode`. The interface follows easyfsl's ``TaskSampler`` (Bennequin, easy-few-shot-learning),
with three additions that face data needs:

* episodes are a pure function of ``(seed, episode index)``, so a run is repeatable and episode
  ``i`` does not depend on how many episodes were asked for;
* ``subject_disjoint=True`` keeps the people of the support set out of the query set, so a
  query is never recognised by its identity rather than its expression;
* a class with too few samples is an error that names it, or (``on_too_few='skip'``) is dropped
  with a warning.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor
from torch.utils.data import Sampler

__all__ = ["Episode", "EpisodeSampler", "LabelledSamples"]

logger = logging.getLogger(__name__)

TooFewPolicy = Literal["error", "skip"]

# A subject-disjoint partition that leaves a class short is redrawn this many times before the
# episode is declared impossible; with a few more subjects than n_shot + n_query it rarely fails.
_MAX_PARTITION_TRIES = 100


class LabelledSamples(Protocol):
    """Anything with per-sample ``targets`` and ``subject_ids`` (a FaceExpressionDataset, a FeatureSet)."""

    targets: ArrayLike
    subject_ids: ArrayLike


class Episode(NamedTuple):
    """One few-shot task; unpacks like easyfsl's 5-tuple.

    Attributes:
        support_images: Support samples, shape ``(n_way * n_shot, *sample_shape)``.
        support_labels: Episode-local labels in ``[0, n_way)``, shape ``(n_way * n_shot,)``.
        query_images: Query samples, shape ``(n_way * n_query, *sample_shape)``.
        query_labels: Episode-local labels, shape ``(n_way * n_query,)``.
        class_ids: Dataset class index of each episode-local label, length ``n_way``.
    """

    support_images: Tensor
    support_labels: Tensor
    query_images: Tensor
    query_labels: Tensor
    class_ids: list[int]


class EpisodeSampler(Sampler[list[int]]):
    """Yields the sample positions of N-way K-shot Q-query episodes.

    Args:
        dataset: Labelled samples; ``subject_ids`` is read only when ``subject_disjoint``.
        n_way: Classes per episode.
        n_shot: Support samples per class.
        n_query: Query samples per class.
        n_episodes: Episodes per iteration over the sampler.
        classes: Class indices episodes may draw from (e.g. the compound classes only); None
            allows every class present in ``dataset``.
        subject_disjoint: Draw support and query from disjoint sets of subjects.
        on_too_few: What to do with a class that cannot fill ``n_shot + n_query`` samples (from
            as many distinct subjects, when ``subject_disjoint``): ``'error'`` or ``'skip'``.
        seed: Seed of the episodes; equal seeds give equal episodes.

    Raises:
        ValueError: If a count is not positive, ``on_too_few`` is unknown, a class is too small
            and ``on_too_few='error'``, or fewer than ``n_way`` classes remain.
    """

    def __init__(
        self,
        dataset: LabelledSamples,
        n_way: int,
        n_shot: int,
        n_query: int,
        n_episodes: int,
        classes: Sequence[int] | None = None,
        subject_disjoint: bool = False,
        on_too_few: TooFewPolicy = "error",
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (("n_way", n_way), ("n_shot", n_shot), ("n_query", n_query), ("n_episodes", n_episodes)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if on_too_few not in ("error", "skip"):
            raise ValueError(f"on_too_few must be 'error' or 'skip', got {on_too_few!r}")
        self.n_way, self.n_shot, self.n_query, self.n_episodes = n_way, n_shot, n_query, n_episodes
        self.subject_disjoint = subject_disjoint
        self.seed = seed
        self.labels = _as_int_array(dataset.targets)
        self.subjects = _as_int_array(dataset.subject_ids) if subject_disjoint else None
        if self.subjects is not None and len(self.subjects) != len(self.labels):
            raise ValueError(f"subject_ids has {len(self.subjects)} entries but targets has {len(self.labels)}")
        wanted = sorted(set(np.unique(self.labels).tolist()) if classes is None else {int(c) for c in classes})
        self.positions_per_class = {c: np.flatnonzero(self.labels == c) for c in wanted}
        self.class_ids = self._usable_classes(wanted, on_too_few)

    def _usable_classes(self, wanted: list[int], on_too_few: TooFewPolicy) -> list[int]:
        needed = self.n_shot + self.n_query
        unit = "distinct subjects" if self.subjects is not None else "samples"
        short = {}
        for class_id in wanted:
            positions = self.positions_per_class[class_id]
            available = len(np.unique(self.subjects[positions])) if self.subjects is not None else len(positions)
            if available < needed:
                short[class_id] = available
        if short:
            detail = ", ".join(f"class {c}: {n}" for c, n in short.items())
            message = f"{len(short)} class(es) have fewer than n_shot + n_query = {needed} {unit} ({detail})"
            if on_too_few == "error":
                raise ValueError(message + "; lower n_shot/n_query, add data, or pass on_too_few='skip'")
            warnings.warn(message + "; skipping them", stacklevel=3)
        usable = [c for c in wanted if c not in short]
        if len(usable) < self.n_way:
            raise ValueError(
                f"only {len(usable)} class(es) can fill an episode ({usable}), fewer than n_way = {self.n_way}"
            )
        return usable

    def __len__(self) -> int:
        return self.n_episodes

    def __iter__(self) -> Iterator[list[int]]:
        for index in range(self.n_episodes):
            yield self.episode(index)

    def episode(self, index: int) -> list[int]:
        """Sample positions of episode ``index``: per class, ``n_shot`` support then ``n_query`` query.

        Args:
            index: Episode number; the episode depends only on it and ``seed``.

        Returns:
            ``n_way * (n_shot + n_query)`` distinct positions.

        Raises:
            ValueError: If ``subject_disjoint`` and no subject partition fills every class.
        """
        rng = np.random.default_rng([self.seed, index])
        chosen = rng.choice(self.class_ids, size=self.n_way, replace=False).tolist()
        if self.subjects is None:
            return [int(p) for c in chosen
                    for p in rng.choice(self.positions_per_class[c], self.n_shot + self.n_query, replace=False)]
        return self._subject_disjoint_episode(chosen, rng)

    def _subject_disjoint_episode(self, chosen: list[int], rng: np.random.Generator) -> list[int]:
        assert self.subjects is not None
        for _ in range(_MAX_PARTITION_TRIES):
            # Give subjects to the support side in random order until every class has n_shot
            # support subjects: the fewest possible, which leaves the most for the queries.
            order = rng.permutation(np.unique(np.concatenate([self.subjects[self.positions_per_class[c]] for c in chosen])))
            support_subjects: set[int] = set()
            for subject in order:
                if all(self._count(c, support_subjects) >= self.n_shot for c in chosen):
                    break
                support_subjects.add(int(subject))
            episode: list[int] = []
            for class_id in chosen:
                positions = self.positions_per_class[class_id]
                in_support = np.isin(self.subjects[positions], list(support_subjects))
                support_pool, query_pool = positions[in_support], positions[~in_support]
                if len(support_pool) < self.n_shot or len(query_pool) < self.n_query:
                    break
                episode += rng.choice(support_pool, self.n_shot, replace=False).tolist()
                episode += rng.choice(query_pool, self.n_query, replace=False).tolist()
            else:
                return [int(p) for p in episode]
        raise ValueError(
            f"could not split the subjects of classes {chosen} into {self.n_shot} support and {self.n_query} "
            f"query samples per class in {_MAX_PARTITION_TRIES} tries; lower n_query or add subjects"
        )

    def _count(self, class_id: int, subjects: set[int]) -> int:
        assert self.subjects is not None
        return int(np.isin(self.subjects[self.positions_per_class[class_id]], list(subjects)).sum())

    def episodic_collate_fn(self, items: Sequence[tuple[Any, int | Tensor]]) -> Episode:
        """Stacks one episode's ``(sample, label)`` items into an :class:`Episode`.

        Args:
            items: The dataset items at the positions of one :meth:`episode`, in that order;
                samples are tensors of one shape, labels ints or 0-dim integer tensors.

        Returns:
            The episode, with labels remapped to ``[0, n_way)`` in the order the classes were drawn.

        Raises:
            ValueError: If ``items`` does not have the layout of an episode of this sampler.
        """
        per_class = self.n_shot + self.n_query
        if len(items) != self.n_way * per_class:
            raise ValueError(f"expected {self.n_way * per_class} items for one episode, got {len(items)}")
        samples = torch.stack([torch.as_tensor(sample) for sample, _ in items])
        labels = torch.tensor([int(label) for _, label in items]).reshape(self.n_way, per_class)
        class_ids = labels[:, 0].tolist()
        if not bool((labels == labels[:, :1]).all()) or len(set(class_ids)) != self.n_way:
            raise ValueError("items are not laid out class by class as EpisodeSampler yields them")
        local = torch.arange(self.n_way).unsqueeze(1).expand(self.n_way, per_class)
        samples = samples.reshape(self.n_way, per_class, *samples.shape[1:])
        return Episode(
            support_images=samples[:, : self.n_shot].reshape(-1, *samples.shape[2:]),
            support_labels=local[:, : self.n_shot].reshape(-1),
            query_images=samples[:, self.n_shot :].reshape(-1, *samples.shape[2:]),
            query_labels=local[:, self.n_shot :].reshape(-1),
            class_ids=class_ids,
        )


def _as_int_array(values: ArrayLike) -> np.ndarray:
    array = values.numpy() if isinstance(values, Tensor) else np.asarray(values)
    return array.reshape(-1).astype(np.int64)
