"""What every few-shot method is: a learner on frozen features that starts from the base session.

A :class:`FewShotLearner` starts from the **base session** (the basic-phase head and the basic
classes' training features, :class:`BaseSession`), learns one session of new classes at a time from
their shots (:meth:`FewShotLearner.learn`) and scores any features over every class seen
(:meth:`FewShotLearner.logits`). The methods are in :mod:`cfer.fewshot.methods` (trained and
imprinted heads) and :mod:`cfer.fewshot.ranpac` (RanPAC's statistics, calibrated or composed).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from cfer.models.heads import ExpandableHead

__all__ = ["BaseSession", "FewShotLearner"]


@dataclass(frozen=True)
class BaseSession:
    """What every method starts from: the basic-phase head and the base session's training features.

    Attributes:
        head: The basic model's head on backbone features; output ``j`` is basic class ``j``. Never
            trained or grown (it is the distillation teacher); learners put it in eval mode.
        features: Features of the basic classes' training images, shape (N, D).
        labels: Their output indices in ``[0, head.num_classes)``, shape (N,).
        classes: The basic classes' names in output order; empty when unknown (methods that build a
            compound from its components need them).
        au_intensities: The training images' action-unit intensities, shape (N, A); None when the
            data carries none.
        au_ids: The FACS number of each column of ``au_intensities``.
    """

    head: ExpandableHead
    features: Tensor
    labels: Tensor
    classes: tuple[str, ...] = ()
    au_intensities: Tensor | None = None
    au_ids: tuple[int, ...] = ()

    @property
    def num_classes(self) -> int:
        """Classes of the base session."""
        return self.head.num_classes


class FewShotLearner(ABC):
    """A classifier on frozen features that adds classes from few shots, one session at a time.

    Args:
        base: The base session.
        seed: Seeds everything random the method does (new units, batches, dropout).
    """

    def __init__(self, base: BaseSession, seed: int = 0) -> None:
        self.num_base = base.num_classes
        self.num_classes = base.num_classes
        self.sessions = 0
        self.seed = seed
        self.class_names: list[str] | None = list(base.classes) if base.classes else None

    def learn(self, support: Tensor, labels: Tensor, names: Sequence[str] | None = None) -> None:
        """Learns one session's new classes from their shots.

        Args:
            support: Shot features, shape (n_new · K, D).
            labels: Their output indices, shape (n_new · K,): exactly the next ``n_new`` outputs,
                ``num_classes .. num_classes + n_new − 1``.
            names: The new classes' names, in output order (appended to :attr:`class_names`).

        Raises:
            ValueError: If the labels are not the next outputs, or ``names`` does not name each once.
        """
        new = torch.unique(labels)
        expected = torch.arange(self.num_classes, self.num_classes + len(new))
        if not torch.equal(new.cpu(), expected):
            raise ValueError(f"a session's labels must be the next outputs {expected.tolist()}, got {new.tolist()}")
        if names is not None and len(names) != len(new):
            raise ValueError(f"{len(new)} new classes but {len(names)} names: {list(names)}")
        if self.class_names is not None:
            self.class_names = self.class_names + list(names) if names is not None else None
        self._learn(support.float(), labels.to(torch.int64), len(new))
        self.num_classes += len(new)
        self.sessions += 1

    @abstractmethod
    def _learn(self, support: Tensor, labels: Tensor, num_new: int) -> None:
        """Adds ``num_new`` classes; ``self.num_classes`` and ``self.sessions`` still count the earlier ones,
        :attr:`class_names` (when known) already names the new ones."""

    @abstractmethod
    def logits(self, features: Tensor) -> Tensor:
        """Scores of every class seen, shape (N, num_classes), for features (N, D)."""

    @torch.no_grad()
    def predict(self, features: Tensor, batch_size: int = 1024) -> Tensor:
        """Predicted output indices, shape (N,)."""
        return torch.cat([self.logits(features[i:i + batch_size].float()).argmax(1)
                          for i in range(0, len(features), batch_size)]) if len(features) else torch.empty(0, dtype=torch.int64)

    def _generator(self) -> torch.Generator:
        """A generator for this session, a function of the seed and the session index only."""
        return torch.Generator().manual_seed(self.seed * 7919 + self.sessions)
