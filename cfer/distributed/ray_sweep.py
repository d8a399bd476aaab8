"""A sweep of independent runs as Ray tasks: prerequisites once, retries, results back in ``--out``.

:func:`run_sweep` takes named :class:`SweepTask` s (a picklable function, its arguments, the tasks whose
values it needs and the paths under ``--out`` it reads and writes) and runs each as a Ray remote task
with the resources of a :class:`RayConfig`. A task that needs another gets that task's value through
Ray's object store, so a prerequisite shared by many runs (a basic model, a feature cache) is built
by one task, once. A task whose worker process or node dies is started again (``max_retries``) and
resumes from whatever checkpoint it had written; a task that raises is not retried (its error is
deterministic) and is reported by name with its error, while the sweep goes on.

Where the worker sees the driver's ``--out`` (one machine, or a shared filesystem), each task works
in its own folder there directly. Elsewhere it works in a scratch folder of its node that mirrors
``--out``: the driver ships the task's files in (a partial checkpoint) and writes the files the task
sends back into ``--out`` atomically, so the results reach the driver without a shared filesystem.
Ray is imported only here, and only when a sweep runs: ``pip install 'cfer[ray]'``.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from cfer.io import atomic_write_bytes, atomic_write_text

__all__ = ["RayConfig", "SweepError", "SweepOutcome", "SweepTask", "run_sweep"]

logger = logging.getLogger(__name__)

_MARKER = ".cfer-sweep"  # in --out while a sweep runs: a worker that reads the driver's token there shares it
Files = dict[str, bytes]  # path relative to --out -> content
_WORKER_ENV = {
    # one bar per run inside a worker would flood the driver's terminal: the driver draws the sweep's
    "TQDM_DISABLE": "1",
    # as cfer.cli.main: Avalanche warns on import that no QP solver is installed, which no cfer run needs
    "PYTHONWARNINGS": "ignore:no QP solver found:UserWarning",
}


@dataclass(frozen=True)
class RayConfig:
    """Where a sweep's tasks run, and what each one gets."""

    address: str | None = None  # None: a local Ray on this machine's cores; 'auto' or 'ray://host:port': a cluster
    cpus_per_task: float = 1.0  # CPUs Ray reserves for each task
    threads_per_task: int = 1  # torch intra-op threads in each task (one per reserved CPU is right on a busy CPU)
    gpus_per_task: float = 0.0  # share of a GPU per task where the cluster has GPUs, e.g. 0.25: four tasks per GPU
    max_retries: int = 3  # restarts of a task whose worker or node died; a task that raises is not retried
    local_cpus: int | None = None  # CPUs of the local Ray (address None); None: every core of this machine
    # whether workers see --out: True works there, False ships files both ways, None: each task checks
    shared_filesystem: bool | None = None


@dataclass(frozen=True)
class SweepTask:
    """One task of a sweep.

    The task calls ``function(root, *args, *needed)``: ``root`` is the folder that stands for ``--out``
    on its worker, and ``needed`` the values of the tasks named in ``needs``, in that order.
    """

    name: str  # unique; the progress log and the failure report name the task by it
    function: Callable[..., Any]  # picklable and importable on the workers (a module-level function)
    args: tuple[Any, ...] = ()  # picklable arguments after root
    needs: tuple[str, ...] = ()  # tasks that run first and whose values are passed after args
    files: tuple[str, ...] = ()  # paths under --out (files or folders) the task reads and writes
    # what the driver receives of the value (called on the worker); None: all of it. Tasks that need
    # this one always receive the whole value.
    report: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class SweepOutcome:
    """What a sweep gave: the driver's share of each finished task's value, and each failure's error."""

    values: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


class SweepError(RuntimeError):
    """Some tasks of a sweep failed for good; the others finished and their results are in ``--out``.

    Args:
        failures: Each failed task's name and error.
    """

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = dict(failures)
        lines = [f"  {name}: {error}" for name, error in self.failures.items()]
        super().__init__(f"{len(self.failures)} task(s) failed:\n" + "\n".join(lines)
                         + "\nthe other tasks finished; run the same command again to run only what is missing")


def run_sweep(tasks: Sequence[SweepTask], out_dir: str | Path, config: RayConfig,
              description: str = "sweep") -> SweepOutcome:
    """Runs ``tasks`` as Ray tasks, a task after those it needs, with a progress bar over them.

    Connects to ``config.address`` (or starts a local Ray, shut down at the end); a Ray already
    initialised in this process is used as it is.

    Args:
        tasks: The tasks; a task is listed after those it needs.
        out_dir: The driver's output folder; every file a task writes ends up there.
        config: The cluster and the resources of each task.
        description: Label of the progress bar.

    Returns:
        The values the driver receives, by task name, and the failures (the sweep goes on past them).

    Raises:
        ImportError: If Ray is not installed.
        ValueError: If two tasks have the same name, or a task needs one listed after it.
    """
    _check_order(tasks)
    ray = _import_ray()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    started_here = _connect(ray, config)
    token = uuid.uuid4().hex
    atomic_write_text(out_dir / _MARKER, token)
    try:
        pending = _submit(ray, tasks, out_dir, token, config)
        return _gather(ray, pending, out_dir, {task.name: task for task in tasks}, description)
    finally:
        (out_dir / _MARKER).unlink(missing_ok=True)
        if started_here:
            ray.shutdown()


def _check_order(tasks: Sequence[SweepTask]) -> None:
    seen: set[str] = set()
    for task in tasks:
        if task.name in seen:
            raise ValueError(f"two tasks are named {task.name!r}")
        missing = [name for name in task.needs if name not in seen]
        if missing:
            raise ValueError(f"task {task.name!r} needs {missing}, which are not listed before it")
        seen.add(task.name)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise ImportError("running on Ray needs Ray: pip install 'cfer[ray]' (or pip install ray)") from error
    return ray


def _connect(ray: Any, config: RayConfig) -> bool:
    """Initialises Ray unless it already is; returns whether it was started here."""
    if ray.is_initialized():
        return False
    if config.address is None:
        ray.init(num_cpus=config.local_cpus, include_dashboard=False)
    else:
        ray.init(address=config.address)
    logger.info("Ray: %s", ray.cluster_resources())
    return True


@dataclass(frozen=True)
class _Pending:
    """A submitted task's references: the value its dependants get, the files and the report for the driver."""

    value: Any
    files: Any
    report: Any


def _submit(ray: Any, tasks: Sequence[SweepTask], out_dir: Path, token: str,
            config: RayConfig) -> dict[str, _Pending]:
    remote = ray.remote(_execute)
    options = dict(
        num_cpus=config.cpus_per_task, num_gpus=config.gpus_per_task, max_retries=config.max_retries,
        retry_exceptions=False, num_returns=3,
        runtime_env={"env_vars": _WORKER_ENV},
    )
    # a local Ray shares this machine's filesystem, unless told to act as if it did not
    shared = config.shared_filesystem if config.shared_filesystem is not None else (True if config.address is None
                                                                                    else None)
    place = _Place(str(out_dir), token, _scratch_key(out_dir), shared)
    pending: dict[str, _Pending] = {}
    for task in tasks:
        inputs = {} if shared else _read_files(out_dir, task.files)
        needed = [pending[name].value for name in task.needs]
        value, files, report = remote.options(name=task.name, **options).remote(
            task.function, task.args, task.files, task.report, place, config.threads_per_task, inputs, *needed)
        pending[task.name] = _Pending(value, files, report)
    # While the first tasks build what the others need, the idle workers import the tasks' modules
    # (torch, timm, Avalanche: seconds each), so that they start the dependent tasks at once.
    slots = int(ray.available_resources().get("CPU", 1) // max(config.cpus_per_task, 1e-3))
    functions = tuple({task.function for task in tasks})
    warm = ray.remote(_import).options(num_cpus=config.cpus_per_task, runtime_env=options["runtime_env"])
    for _ in range(min(slots, len(tasks))):
        warm.remote(functions)
    return pending


def _import(functions: tuple[Callable[..., Any], ...]) -> None:
    """Nothing: unpickling ``functions`` imports their modules in the worker that runs it."""


def _gather(ray: Any, pending: dict[str, _Pending], out_dir: Path, tasks: dict[str, SweepTask],
            description: str) -> SweepOutcome:
    """Waits for every task, writes the files it sends back, logs one line per finished task."""
    outcome = SweepOutcome()
    waiting = {entry.files: name for name, entry in pending.items()}
    with logging_redirect_tqdm(), tqdm(total=len(waiting), desc=description, unit="task", dynamic_ncols=True) as bar:
        while waiting:
            ready, _ = ray.wait(list(waiting), num_returns=1)
            name = waiting.pop(ready[0])
            try:
                _write_files(out_dir, ray.get(ready[0]))
                outcome.values[name], seconds = ray.get(pending[name].report)
                logger.info("finished %s in %.1f s (%d of %d)", name, seconds, bar.n + 1, bar.total)
            except ray.exceptions.RayError as error:
                failed_needs = [need for need in tasks[name].needs if need in outcome.failures]
                outcome.failures[name] = (f"not run: it needs {', '.join(failed_needs)}, which failed" if failed_needs
                                          else _describe(error))
                logger.error("FAILED %s: %s", name, outcome.failures[name])
            bar.update()
    return outcome


def _describe(error: Exception) -> str:
    """The task's own exception, when it raised one; else what Ray says (a worker or node that died)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"


@dataclass(frozen=True)
class _Place:
    """Where a task works: the driver's ``--out`` when it sees it, else a scratch mirror on its node."""

    out_dir: str
    token: str
    scratch_key: str  # the same for every sweep into this --out, so that a retried task finds its checkpoint
    shared: bool | None

    def root(self) -> tuple[Path, bool]:
        marker = Path(self.out_dir) / _MARKER
        shared = self.shared if self.shared is not None else (
            marker.is_file() and marker.read_text(encoding="utf-8") == self.token)
        if shared:
            return Path(self.out_dir), True
        return Path(tempfile.gettempdir()) / "cfer-sweep" / self.scratch_key, False


def _scratch_key(out_dir: Path) -> str:
    return hashlib.sha256(f"{socket.gethostname()}:{out_dir}".encode()).hexdigest()[:16]


def _execute(function: Callable[..., Any], args: tuple[Any, ...], paths: tuple[str, ...],
             report: Callable[[Any], Any] | None, place: _Place, threads: int, inputs: Files,
             *needed: Any) -> tuple[Any, Files, tuple[Any, float]]:
    """The remote side of a task: its threads, its folder, its function; the files it sends back, its time."""
    import torch

    start = time.perf_counter()
    torch.set_num_threads(threads)
    root, shared = place.root()
    for relative, content in inputs.items():
        if not (root / relative).exists():  # a checkpoint a killed attempt left here is newer than the driver's
            atomic_write_bytes(root / relative, content)
    value = function(root, *args, *needed)
    files: Files = {} if shared else _read_files(root, paths)
    if not shared:  # sent back: the scratch copy would only fill the node's disk
        for relative in paths:
            if (root / relative).is_dir():
                shutil.rmtree(root / relative)
            else:
                (root / relative).unlink(missing_ok=True)
    return value, files, (value if report is None else report(value), time.perf_counter() - start)


def _read_files(root: Path, paths: Sequence[str]) -> Files:
    """Every file at or under ``paths`` (relative to ``root``) that exists, by path relative to ``root``."""
    files: Files = {}
    for relative in paths:
        path = root / relative
        found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
        for item in found:
            files[item.relative_to(root).as_posix()] = item.read_bytes()
    return files


def _write_files(out_dir: Path, files: Files) -> None:
    for relative, content in files.items():
        atomic_write_bytes(out_dir / relative, content)
