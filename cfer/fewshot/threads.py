"""One intra-op thread for the protocols' many small tensor operations.

Heads on cached features, prototypes and episodes are small matrix products: on the CPU, synchronising
threads costs more than it saves, and on a busy machine many times more (measured: 100 steps of a tiny
head took 0.3 s on one thread, 6 s on two with another job running). The basic phase's head stage does
the same (:mod:`cfer.training.basic`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["one_thread"]


@contextmanager
def one_thread() -> Iterator[None]:
    """Runs the block with ``torch.set_num_threads(1)``, then restores the previous count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
