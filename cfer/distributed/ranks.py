"""The processes of a ``torchrun`` launch: which one this is, and the few collectives training needs.

``torchrun --nproc_per_node N -m cfer train-basic ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment; :func:`process_group` joins them (gloo on the
CPU, NCCL on CUDA, each process on GPU ``LOCAL_RANK``) and yields their :class:`Ranks`. Training then
splits the work the same way everywhere:

* **every global batch** is drawn by every rank from the same generator, as one process would draw
  it, and each rank trains on its contiguous share (:meth:`Ranks.shard`), its mean loss weighted so
  that DistributedDataParallel's average of the ranks' gradients is the gradient of the global
  batch's mean. Each image is seen once per epoch across the ranks, and the optimiser sees the
  configured batch size whatever the number of processes. (``torch.utils.data.DistributedSampler``
  would pad the epoch with repeated images or drop its last ones, and shuffle differently from one
  process.)
* **every pass without gradients** over a set of images (validation, features, a frozen trunk's
  activations) is split in contiguous row blocks and gathered (:meth:`Ranks.map_rows`), so every rank
  holds the same result.
* **rank 0 alone reads and writes the run directory**; what the others need from it (a resume state,
  a finished fold's metrics) they get by :meth:`Ranks.broadcast`, so the ranks of several nodes need
  no shared filesystem.

Without ``torchrun`` (one process) every method here is the identity, and training runs exactly as
it always did.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["Ranks", "current_ranks", "process_group"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's ``rank`` among ``world_size`` (0 of 1 without ``torchrun``)."""

    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the one that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether several processes share the work."""
        return self.world_size > 1

    def shard(self, count: int) -> tuple[Tensor, float]:
        """This rank's rows of a global batch, and the factor of its mean loss.

        Args:
            count: Rows of the global batch.

        Returns:
            ``(rows, factor)``: the indices of a contiguous block (sizes differ by at most one across
            ranks), and ``world_size * len(rows) / count``. A rank left without rows (``count`` below
            ``world_size``) gets row 0 with factor 0, so that it still takes part in the all-reduce of
            the gradients without changing them.
        """
        rows = torch.arange(count).tensor_split(self.world_size)[self.rank]
        if len(rows) == 0:
            return torch.zeros(1, dtype=torch.int64), 0.0
        return rows, self.world_size * len(rows) / count

    def map_rows(self, compute: Callable[[slice], Tensor], count: int) -> Tensor:
        """``compute`` over ``count`` rows, each rank on a contiguous block, the blocks gathered in order.

        Args:
            compute: Maps a slice of the rows to their outputs, shape ``(len(rows), ...)``.
            count: The number of rows.

        Returns:
            The outputs of every row, shape ``(count, ...)``, the same on every rank.
        """
        if not self.distributed:
            return compute(slice(0, count))
        bounds = [len(block) for block in torch.arange(count).tensor_split(self.world_size)]
        start = sum(bounds[: self.rank])
        mine = compute(slice(start, start + bounds[self.rank]))
        padded = mine.new_zeros((max(bounds), *mine.shape[1:]))
        padded[: len(mine)] = mine
        device = _collective_device()
        blocks = [torch.empty_like(padded, device=device) for _ in range(self.world_size)]
        dist.all_gather(blocks, padded.to(device))
        return torch.cat([block[:size] for block, size in zip(blocks, bounds)]).to(mine.device)

    def all_sum(self, values: Sequence[float]) -> list[float]:
        """Each value summed over the ranks (in float64)."""
        if not self.distributed:
            return list(values)
        total = torch.tensor(list(values), dtype=torch.float64, device=_collective_device())
        dist.all_reduce(total)
        return total.cpu().tolist()

    def gather(self, value: T) -> list[T]:
        """Every rank's (picklable) ``value``, by rank."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def broadcast(self, value: T) -> T:
        """Rank 0's (picklable) ``value`` on every rank."""
        if not self.distributed:
            return value
        box = [value if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Waits until every rank gets here."""
        if self.distributed:
            dist.barrier()

    def wrap(self, model: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """``model`` in DistributedDataParallel (its gradients averaged over the ranks), or itself.

        Call it once the parameters to train have ``requires_grad`` set: DDP reduces only those.

        Args:
            model: The module the forward pass goes through.
            find_unused_parameters: Whether some trainable parameters may get no gradient (DDP then
                looks for them after every forward pass, which costs a traversal of the graph).
        """
        if not self.distributed:
            return model
        return nn.parallel.DistributedDataParallel(model, find_unused_parameters=find_unused_parameters)


def current_ranks() -> Ranks:
    """The ranks of the process group joined by :func:`process_group` (one process when none is)."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


@contextmanager
def process_group(device: str = "auto") -> Iterator[Ranks]:
    """Joins the processes ``torchrun`` started, and leaves them at the end; one process is left alone.

    Args:
        device: The run's device setting: NCCL (one GPU per local rank) where it resolves to CUDA,
            gloo on the CPU.

    Yields:
        This process's ranks.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1 or dist.is_initialized():
        yield current_ranks()
        return
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    ranks = current_ranks()
    logger.info("rank %d of %d (%s)", ranks.rank, ranks.world_size, dist.get_backend())
    try:
        yield ranks
    finally:
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    """Where tensors of a collective must be: the current GPU for NCCL, the CPU for gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
