"""Predictive Sorting Memory Replay (PSMR) as Avalanche storage: which exemplars to keep and how many.

Maiden & Nakisa (2023), "Complex Facial Expression Recognition Using Deep Knowledge
Distillation of Basic Features", keep for every class the ``m`` training samples that the model
scores highest on that class's own output unit (the plain-PyTorch core is
:mod:`cfer.core.sorting`). The reference (github.com/AngusMaiden/complex-FER,
``src/models/train.py``, ``RepresentativeMemoryUpdate``; ``src/complex_FER.py``, ``cont``):

* ranks the basic classes with the basic model before the first incremental step, and each new
  class, over all of its training samples, with the model that has just learned it;
* never re-ranks a stored class: later steps keep the first ``m`` of its stored (sorted) list;
* ``'grow'`` mode keeps ``m`` fixed, so the memory grows by ``m`` per class; ``'limit'`` mode
  keeps ``M`` fixed and sets ``m = floor(M / classes_seen)``. (The reference uses
  ``m = floor(M / C_total)`` for the very first selection in both modes; here ``'limit'`` always
  divides by the classes seen, filling the budget from the start.)

:class:`PredictiveSortingSelection` (which ones) and :class:`PSMRBuffer` (how many) adapt the core
to Avalanche's ``ExemplarsSelectionStrategy`` and ``ExemplarsBuffer``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Literal

import torch
from avalanche.benchmarks.utils import AvalancheDataset
from avalanche.training.storage_policy import (
    BalancedExemplarsBuffer,
    ExemplarsBuffer,
    ExemplarsSelectionStrategy,
)

from cfer.core.sorting import SCORES, Score, predictive_sort

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate

logger = logging.getLogger(__name__)

__all__ = ["MEMORY_MODES", "MemoryMode", "PSMRBuffer", "PredictiveSortingSelection"]

MemoryMode = Literal["grow", "limit"]
MEMORY_MODES: tuple[str, ...] = ("grow", "limit")


def _single_class(data: AvalancheDataset) -> int:
    classes = {int(target) for target in data.targets}
    if len(classes) != 1:
        raise ValueError(f"expected the samples of one class, got classes {sorted(classes)}")
    return classes.pop()


class PredictiveSortingSelection(ExemplarsSelectionStrategy):
    """Avalanche selection strategy ranking a class's samples with :func:`predictive_sort`.

    Uses ``strategy.model`` as it is when called (after training, the model that has just
    learned the class) and the eval transforms of the data.

    Args:
        score: ``'probability'`` or ``'logit'``; see :func:`predictive_sort`.
        batch_size: Inference mini-batch size; the strategy's ``eval_mb_size`` if None.
    """

    def __init__(self, score: Score = "probability", batch_size: int | None = None) -> None:
        if score not in SCORES:
            raise ValueError(f"unknown score {score!r}; known scores: {list(SCORES)}")
        self.score: Score = score
        self.batch_size = batch_size

    def make_sorted_indices(
        self, strategy: "SupervisedTemplate", data: AvalancheDataset
    ) -> list[int]:
        """Rank the samples of one class, best first.

        Args:
            strategy: Provides ``model``, ``device`` and ``eval_mb_size``.
            data: Samples of a single class.

        Returns:
            Indices into ``data``.

        Raises:
            ValueError: If ``data`` holds more than one class.
        """
        class_index = _single_class(data)
        order = predictive_sort(
            strategy.model,
            data.eval(),
            class_index,
            batch_size=self.batch_size or strategy.eval_mb_size,
            device=strategy.device,
            score=self.score,
        )
        return order.tolist()


class _RankedClassBuffer(ExemplarsBuffer):
    """The exemplars of one class, kept in rank order so that shrinking keeps the best."""

    def update_from_dataset(
        self,
        strategy: "SupervisedTemplate",
        data: AvalancheDataset,
        selection_strategy: ExemplarsSelectionStrategy,
    ) -> None:
        candidates = data if len(self.buffer) == 0 else self.buffer.concat(data)
        order = selection_strategy.make_sorted_indices(strategy, candidates)
        self.buffer = candidates.subset(order[: self.max_size])

    def resize(self, strategy: object, new_size: int) -> None:
        # truncating, never re-ranking: the reference keeps the head of each stored sorted list
        self.max_size = new_size
        if len(self.buffer) > new_size:
            self.buffer = self.buffer.subset(list(range(new_size)))


class PSMRBuffer(BalancedExemplarsBuffer[_RankedClassBuffer]):
    """Class-balanced storage policy of PSMR: how many exemplars each class keeps.

    Which exemplars is delegated to ``selection_strategy`` (PSMR's
    :class:`PredictiveSortingSelection` by default; Avalanche's
    ``RandomExemplarsSelectionStrategy`` gives the random-memory ablation). A class is ranked
    once, when it first arrives, with the model of that moment; afterwards its list is only
    truncated. (A class that reappears in a later experience, which the paper's protocol never
    does, is re-ranked over its stored exemplars plus the new samples.)

    Args:
        max_size: Memory budget ``M`` (e.g. :func:`representative_memory_size`).
        mode: ``'grow'``: every class keeps ``max_size // total_num_classes`` exemplars, so the
            memory grows with the classes seen; ``'limit'``: the classes seen share ``max_size``
            equally, ``max_size // classes_seen`` each.
        total_num_classes: Number of classes of the whole stream; required by ``'grow'``.
        selection_strategy: Orders a class's samples, best first.

    Raises:
        ValueError: If ``mode`` is unknown or ``'grow'`` lacks ``total_num_classes``.
    """

    def __init__(
        self,
        max_size: int,
        *,
        mode: MemoryMode = "grow",
        total_num_classes: int | None = None,
        selection_strategy: ExemplarsSelectionStrategy | None = None,
    ) -> None:
        if mode not in MEMORY_MODES:
            raise ValueError(f"unknown memory mode {mode!r}; known modes: {list(MEMORY_MODES)}")
        if mode == "grow" and not total_num_classes:
            raise ValueError("mode 'grow' needs total_num_classes (classes of the whole stream)")
        super().__init__(max_size, adaptive_size=True)
        self.mode: MemoryMode = mode
        self.total_num_classes = total_num_classes
        self.selection_strategy = selection_strategy or PredictiveSortingSelection()

    @property
    def seen_classes(self) -> list[int]:
        """Classes in memory, in order of arrival."""
        return list(self.buffer_groups)

    @property
    def memory_per_class(self) -> int:
        """Current number of exemplars each class keeps (the paper's ``m``)."""
        if self.mode == "grow":
            assert self.total_num_classes is not None
            return self.max_size // self.total_num_classes
        return self.max_size // max(1, len(self.buffer_groups))

    def post_adapt(self, agent: "SupervisedTemplate", exp: object) -> None:
        """Add the classes of the experience just trained (Avalanche ``after_training_exp``).

        Args:
            agent: The strategy, whose model has just been trained on ``exp``.
            exp: Experience with a ``dataset``.
        """
        self.update_from_dataset(agent, exp.dataset)  # type: ignore[attr-defined]

    def update_from_dataset(self, strategy: "SupervisedTemplate", data: AvalancheDataset) -> None:
        """Rank each class of ``data`` and keep the top ``memory_per_class`` of every class.

        Also usable to seed the memory with the basic classes when the basic phase was trained
        outside Avalanche: pass any object with ``model``, ``device`` and ``eval_mb_size``.

        Args:
            strategy: Provides the model that ranks the samples.
            data: Samples of one or more classes.
        """
        indices_by_class: dict[int, list[int]] = defaultdict(list)
        for index, target in enumerate(data.targets):
            indices_by_class[int(target)].append(index)
        for class_id in indices_by_class:
            if class_id not in self.buffer_groups:
                self.buffer_groups[class_id] = _RankedClassBuffer(0)
        quota = self.memory_per_class
        for class_id, indices in indices_by_class.items():
            group = self.buffer_groups[class_id]
            group.max_size = quota
            group.update_from_dataset(strategy, data.subset(indices), self.selection_strategy)
        self.resize(strategy, self.max_size)
        logger.info(
            "PSMR memory (%s): %d per class, classes %s, %d samples",
            self.mode,
            quota,
            self.seen_classes,
            len(self.buffer),
        )

    def state_dict(self) -> dict[str, Any]:
        """The memory as tensors and plain values, loadable with ``torch.load(weights_only=True)``.

        Exemplars are stored by reference, as the ``sample_id`` data attribute of each stored
        sample (in rank order), not as images; :meth:`load_state_dict` looks them up in the
        dataset they came from.

        Returns:
            ``max_size``, ``mode``, ``total_num_classes`` and, per class in order of arrival,
            ``class_id``, ``max_size`` and ``sample_ids`` (a ``long`` tensor).

        Raises:
            AttributeError: If the stored samples have no ``sample_id`` attribute.
        """
        groups = []
        for class_id, group in self.buffer_groups.items():
            ids = group.buffer.sample_id if len(group.buffer) else []
            groups.append(
                {
                    "class_id": int(class_id),
                    "max_size": int(group.max_size),
                    "sample_ids": torch.as_tensor(list(ids), dtype=torch.long),
                }
            )
        return {
            "max_size": int(self.max_size),
            "mode": self.mode,
            "total_num_classes": self.total_num_classes,
            "groups": groups,
        }

    def load_state_dict(self, state: dict[str, Any], source: AvalancheDataset) -> None:
        """Put back a memory saved by :meth:`state_dict`.

        Args:
            state: The saved memory.
            source: Dataset holding every stored sample, with a ``sample_id`` data attribute
                (e.g. the stream's training split).

        Raises:
            ValueError: If the saved mode differs from this buffer's, or a sample id is not in
                ``source``.
        """
        if state["mode"] != self.mode:
            raise ValueError(f"saved PSMR memory is in mode {state['mode']!r}, this buffer in {self.mode!r}")
        position = {int(sample_id): index for index, sample_id in enumerate(source.sample_id)}
        self.max_size = int(state["max_size"])
        self.total_num_classes = state["total_num_classes"]
        self.buffer_groups.clear()
        for saved in state["groups"]:
            ids = saved["sample_ids"].tolist()
            missing = [sample_id for sample_id in ids if sample_id not in position]
            if missing:
                raise ValueError(
                    f"class {saved['class_id']}: sample ids {missing[:5]} are not in the source "
                    "dataset; pass the dataset the memory was filled from"
                )
            group = _RankedClassBuffer(int(saved["max_size"]))
            group.buffer = source.subset([position[sample_id] for sample_id in ids])
            self.buffer_groups[int(saved["class_id"])] = group

    def resize(self, strategy: object, new_size: int) -> None:
        """Set the budget ``M`` and truncate every class to the new per-class quota.

        Args:
            strategy: Unused; part of Avalanche's interface.
            new_size: New budget.
        """
        self.max_size = new_size
        quota = self.memory_per_class
        for group in self.buffer_groups.values():
            group.resize(strategy, quota)
