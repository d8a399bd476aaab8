"""Beyond one process: a sweep's runs as Ray tasks, and one training run over ``torchrun`` processes.

* :mod:`cfer.distributed.ray_sweep`: :func:`run_sweep` runs named, independent tasks (the runs of
  ``cfer compare``, ``cfer train-incremental --orders N`` and ``cfer fewshot``) on a local Ray or a
  Ray cluster, each prerequisite once, with retries, and brings every result back into ``--out``.
* :mod:`cfer.distributed.ranks`: :class:`Ranks` splits one training run (the basic phase, the
  distillation networks) over DistributedDataParallel processes started by ``torchrun``.

Both know nothing of what they run: the commands' packages describe their tasks, and the training
loop asks its :class:`Ranks` for its share. Ray is imported only when a sweep runs.
"""

from cfer.distributed.ranks import Ranks, current_ranks, process_group
from cfer.distributed.ray_sweep import RayConfig, SweepError, SweepOutcome, SweepTask, run_sweep

__all__ = [
    "Ranks",
    "RayConfig",
    "SweepError",
    "SweepOutcome",
    "SweepTask",
    "current_ranks",
    "process_group",
    "run_sweep",
]
