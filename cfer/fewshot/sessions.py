"""The sessions of few-shot class-incremental learning: which classes come when, and their K shots.

FSCIL (Tao et al. 2020, TOPIC; the protocol of CEC, FACT and TEEN) starts from a base session (here
the basic classes, learned by the basic phase), then adds ``n_way`` new classes per session from
``n_shot`` shots each. :class:`SessionSampler` draws the sessions of one run as a pure function of
``(order, shot seed)`` and its own seed, like :class:`~cfer.fewshot.sampler.EpisodeSampler`:

* the order of the new classes depends on the order index only, so every shot seed sees it;
* a class's shots depend on the shot seed and the class only (:func:`~cfer.fewshot.protocol.select_shots`:
  the same shots whatever the order, and the 1 shot among the 5 for one seed);
* shots never come from ``exclude_subjects`` (the held-out people), and no image is a shot twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from cfer.fewshot.protocol import select_shots
from cfer.fewshot.sampler import LabelledSamples

__all__ = ["Session", "SessionSampler"]


class Session(NamedTuple):
    """One incremental session.

    Attributes:
        index: 1 for the first session after the base one.
        classes: Class indices (of the samples' ``targets``) learned in the session, in output order.
        support: Positions of the shots, class by class: ``n_shot`` per class, shape ``(n_way · n_shot,)``.
    """

    index: int
    classes: list[int]
    support: list[int]


class SessionSampler:
    """Draws the N-way K-shot sessions of few-shot class-incremental runs.

    Args:
        samples: Where shots come from; ``targets`` and ``subject_ids`` are read.
        classes: The new classes, split into ``len(classes) / n_way`` sessions.
        n_way: New classes per session.
        n_shot: Shots per class.
        exclude_subjects: Subjects whose images are never shots (the held-out ones).
        seed: Run seed: with the order index it fixes the class order, with the shot seed the shots.

    Raises:
        ValueError: If ``n_way`` does not divide the number of classes, a count is not positive, or a
            class has fewer than ``n_shot`` images outside ``exclude_subjects``.
    """

    def __init__(self, samples: LabelledSamples, classes: Sequence[int], n_way: int, n_shot: int,
                 exclude_subjects: Sequence[int] = (), seed: int = 0) -> None:
        if n_way < 1 or n_shot < 1:
            raise ValueError(f"n_way and n_shot must be at least 1, got {n_way} and {n_shot}")
        if not classes or len(classes) % n_way:
            raise ValueError(f"n_way = {n_way} does not divide the {len(classes)} new classes into sessions")
        self.classes = [int(c) for c in classes]
        self.n_way, self.n_shot, self.seed = n_way, n_shot, seed
        labels, subjects = _integers(samples.targets), _integers(samples.subject_ids)
        allowed = ~np.isin(subjects, np.asarray(list(exclude_subjects), dtype=np.int64))
        self.candidates = {c: np.flatnonzero((labels == c) & allowed) for c in self.classes}
        short = {c: len(p) for c, p in self.candidates.items() if len(p) < n_shot}
        if short:
            raise ValueError(f"classes {short} have fewer than n_shot = {n_shot} images outside the excluded subjects")

    @property
    def num_sessions(self) -> int:
        """Incremental sessions per run (the base session not counted)."""
        return len(self.classes) // self.n_way

    def order(self, order: int) -> list[int]:
        """The new classes in the order they arrive in run order ``order``."""
        return [int(c) for c in np.random.default_rng([self.seed, 1, order]).permutation(self.classes)]

    def sessions(self, order: int, shot_seed: int) -> list[Session]:
        """The sessions of one run.

        Args:
            order: Index of the class order.
            shot_seed: Index of the shot selection.

        Returns:
            ``num_sessions`` sessions, in order.
        """
        classes = self.order(order)
        sessions = []
        for index in range(self.num_sessions):
            chosen = classes[index * self.n_way:(index + 1) * self.n_way]
            support = [int(p) for c in chosen
                       for p in select_shots(self.candidates[c], self.n_shot, shot_seed, c, base_seed=self.seed)]
            sessions.append(Session(index + 1, chosen, support))
        return sessions


def _integers(values: object) -> np.ndarray:
    array = values.numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    return array.reshape(-1).astype(np.int64)
