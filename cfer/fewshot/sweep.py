"""``cfer fewshot`` on Ray: each (protocol, method) part a task, the basic phase and features once.

:func:`run_fewshot_sweep` opens the run in one task (:func:`~cfer.fewshot.runner.open_fewshot`: the
basic phase, the features of every image, kept in ``features.pt``), then computes every part of
:func:`~cfer.fewshot.runner.fewshot_parts` in a task of its own, each getting the opened run through
Ray's object store; a part finished before is found in ``parts/`` by its task, as a rerun in the
process would find it. Once every part is there, :func:`~cfer.fewshot.runner.run_fewshot` in the
driver reads the features and the parts back and writes the reports, computing nothing again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cfer.distributed.ray_sweep import RayConfig, SweepError, SweepTask, run_sweep
from cfer.fewshot.config import FewShotConfig
from cfer.fewshot.runner import FewShotSession, fewshot_parts, open_fewshot, part_path, run_fewshot, run_fewshot_part

__all__ = ["run_fewshot_sweep"]

_OPENED = "session"  # the name of the task that opens the run


def run_fewshot_sweep(config: FewShotConfig, out_dir: str | Path, ray: RayConfig) -> dict[str, Any]:
    """Runs ``cfer fewshot``'s parts as Ray tasks, then writes the reports as :func:`run_fewshot` does.

    Args:
        config: The settings.
        out_dir: The driver's run directory.
        ray: The cluster and the resources of each task.

    Returns:
        The summary of :func:`run_fewshot`.

    Raises:
        SweepError: If some parts failed for good; the others are kept in ``parts/`` for the rerun.
    """
    out_dir = Path(out_dir).resolve()
    opened = SweepTask(_OPENED, _open, (config,), report=_nothing,
                       files=("config.yaml", "skipped.csv", "basic", "features.pt"))
    parts = [SweepTask(_part_name(protocol, method), _part, (config, protocol, method), needs=(_OPENED,),
                       files=(part_path(Path("."), protocol, method).as_posix(),))
             for protocol, method in fewshot_parts(config)]
    outcome = run_sweep([opened, *parts], out_dir, ray, description="few-shot parts")
    if outcome.failures:
        raise SweepError(outcome.failures)
    return run_fewshot(config, out_dir)


def _part_name(protocol: str, method: str | None) -> str:
    return protocol if method is None else f"{protocol}/{method}"


# --- the tasks: module-level functions, which Ray imports by name on its workers ---------------------------


def _open(root: Path, config: FewShotConfig) -> FewShotSession:
    return open_fewshot(config, root)


def _nothing(session: FewShotSession) -> None:
    """The driver needs nothing of the opened run: its files are in ``--out``."""
    return None


def _part(root: Path, config: FewShotConfig, protocol: str, method: str | None, session: FewShotSession) -> None:
    # Ray hands numpy arrays over read-only, straight from its object store; torch wants to own them
    data = dataclasses.replace(session.data, pool=session.data.pool.copy(), scored=session.data.scored.copy())
    run_fewshot_part(config, dataclasses.replace(session, data=data), root, protocol, method)
