"""``cfer train-incremental`` and ``cfer compare`` on Ray: every (strategy, data seed, order) run a task.

:func:`run_incremental_sweep` does what :func:`cfer.continual.run_incremental` does for each of
several run directories ("sessions"), with the runs spread over a Ray cluster by
:func:`cfer.distributed.run_sweep`:

* one task per run directory opens its session (:func:`~cfer.continual.runner.open_session`: the
  data, the basic phase, the feature cache), once, however many runs need it; the runs get it
  through Ray's object store;
* one task per (strategy, order) run without a ``result.json`` (the runner's own test of a finished
  run) runs it with :func:`~cfer.continual.runner.run_in_session`, resuming from its ``state.pt``;
* the driver then writes each session's reports, in the order given, as the same calls of
  ``run_incremental`` in one process would.

On the CPU with the same threads the runs' metrics equal those of ``run_incremental`` in the
process: each run's randomness is seeded by its order, and a session is built by the same code.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cfer.config import save_config
from cfer.continual.config import IncrementalConfig
from cfer.continual.runner import (
    IncrementalSession,
    SessionFacts,
    check_session,
    finished_run,
    open_session,
    order_count,
    report_session,
    run_directory,
    run_in_session,
)
from cfer.distributed.ray_sweep import RayConfig, SweepError, SweepTask, run_sweep

__all__ = ["run_incremental_sweep"]


def run_incremental_sweep(root: str | Path, sessions: Sequence[tuple[IncrementalConfig, str | Path]],
                          ray: RayConfig) -> list[dict[str, Any]]:
    """Runs every run of every session as Ray tasks, then writes each session's reports.

    Args:
        root: The driver's output folder; every session's directory lies in it (or is it).
        sessions: ``(config, run directory)`` pairs, as ``run_incremental(config, directory)`` would get
            them; two sessions may share a directory (its basic phase and cache are then built once).
        ray: The cluster and the resources of each task.

    Returns:
        Each session's summary, as ``run_incremental`` returns it.

    Raises:
        SweepError: If some tasks failed for good; the reports of the sessions they spared are written.
    """
    root = Path(root).resolve()
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    checked = [(config, check_session(config, directory).resolve()) for config, directory in sessions]
    tasks = _tasks(root, checked)
    outcome = run_sweep(tasks, root, ray, description="runs")
    summaries = []
    for config, directory in checked:
        relative = _relative(root, directory)
        names = [_session_name(relative)] + [_run_name(relative, name, k) for name, k in _runs(config)]
        if any(name in outcome.failures for name in names):
            continue  # a rerun completes the session and writes its reports
        save_config(config, directory / "config.yaml")  # as run_incremental writes each session's settings
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in config.strategies}
        for name, order_index in _runs(config):
            result = outcome.values.get(_run_name(relative, name, order_index))  # None: it had finished before
            runs[name].append(result if result is not None else
                              finished_run(run_directory(directory, name, order_index)))
        summaries.append(report_session(config, directory, outcome.values[names[0]], runs,
                                        wall_seconds=time.perf_counter() - wall_start,
                                        cpu_seconds=time.process_time() - cpu_start))
    if outcome.failures:
        raise SweepError(outcome.failures)
    return summaries


def _runs(config: IncrementalConfig) -> list[tuple[str, int]]:
    """Every (strategy, order index) run of a session, order by order."""
    return [(name, order_index) for order_index in range(order_count(config)) for name in config.strategies]


def _tasks(root: Path, sessions: Sequence[tuple[IncrementalConfig, Path]]) -> list[SweepTask]:
    """A task per run directory (its session), then one per run that has not finished, each run once."""
    tasks: dict[str, SweepTask] = {}
    for config, directory in sessions:
        relative = _relative(root, directory)
        session = _session_name(relative)
        if session not in tasks:
            tasks[session] = SweepTask(session, _open, (config, relative), report=_facts,
                                       files=tuple((Path(relative) / name).as_posix()
                                                   for name in ("config.yaml", "skipped.csv", "basic")))
    for config, directory in sessions:
        relative = _relative(root, directory)
        for name, order_index in _runs(config):
            run = _run_name(relative, name, order_index)
            if run in tasks or finished_run(run_directory(directory, name, order_index)) is not None:
                continue  # listed by another session of the directory, or finished before
            tasks[run] = SweepTask(run, _run, (config, relative, name, order_index), needs=(_session_name(relative),),
                                   files=(run,))
    return list(tasks.values())


def _relative(root: Path, directory: Path) -> str:
    """``directory`` relative to ``root``, with forward slashes; ``.`` for the root itself."""
    return Path(os.path.relpath(directory, root)).as_posix()


def _session_name(relative: str) -> str:
    return (Path(relative) / "session").as_posix()


def _run_name(relative: str, name: str, order_index: int) -> str:
    return run_directory(relative, name, order_index).as_posix()


# --- the tasks: module-level functions, which Ray imports by name on its workers ---------------------------


def _open(root: Path, config: IncrementalConfig, relative: str) -> IncrementalSession:
    session = open_session(config, root / relative)
    session.basic_model.cpu()  # any worker may run the session's runs, with or without a GPU
    return session


def _facts(session: IncrementalSession) -> SessionFacts:
    return session.facts


def _run(root: Path, config: IncrementalConfig, relative: str, name: str, order_index: int,
         session: IncrementalSession) -> dict[str, Any]:
    # Ray hands numpy arrays over read-only, straight from its object store; torch wants to own them
    session = dataclasses.replace(session, splits=session.splits.copy())
    return run_in_session(session, config, root / relative, name, order_index)
