"""run_sweep on a local Ray: prerequisites passed on, failures reported by name, files back without a shared disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfer.distributed import RayConfig, SweepError, SweepTask, run_sweep


# The tasks are defined inside the tests: Ray's workers receive them by value, as this module is not
# importable there.


def test_a_task_gets_what_it_needs_and_a_failure_is_reported_by_name(ray_session, tmp_path: Path) -> None:
    def _count(root: Path, name: str) -> None:
        """Appends to ``root/attempts/<name>``: one mark per start of a task."""
        (root / "attempts").mkdir(exist_ok=True)
        with (root / "attempts" / name).open("a") as file:
            file.write("x")

    def base(root: Path) -> int:
        _count(root, "base")
        return 20

    def plus(root: Path, offset: int, value: int) -> int:
        return value + offset

    def fails(root: Path) -> None:
        _count(root, "fails")
        raise ValueError("no images of class happy")

    tasks = [SweepTask("base", base), SweepTask("fails", fails), SweepTask("plus", plus, (1,), needs=("base",)),
             SweepTask("after failure", plus, (1,), needs=("fails",))]
    outcome = run_sweep(tasks, tmp_path, RayConfig(max_retries=2))
    assert outcome.values == {"base": 20, "plus": 21}  # the sweep went on past the failure
    assert outcome.failures == {"fails": "ValueError: no images of class happy",
                                "after failure": "not run: it needs fails, which failed"}
    assert (tmp_path / "attempts" / "base").read_text() == "x"  # built once, though needed
    assert (tmp_path / "attempts" / "fails").read_text() == "x"  # an exception is not retried
    assert "fails: ValueError" in str(SweepError(outcome.failures))
    assert not (tmp_path / ".cfer-sweep").exists()


def test_without_a_shared_filesystem_the_files_travel_both_ways(ray_session, tmp_path: Path) -> None:
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "state.pt").write_text("partial")  # an earlier session's checkpoint

    def run(root: Path, name: str) -> str:
        folder = root / "runs" / name
        checkpoint = folder / "state.pt"
        resumed = checkpoint.read_text() if checkpoint.exists() else "fresh"
        (folder / "logs").mkdir(parents=True, exist_ok=True)
        (folder / "logs" / "log.txt").write_text(f"{name} from {resumed}")
        (folder / "result.json").write_text("{}")
        return str(root)

    tasks = [SweepTask(f"runs/{name}", run, (name,), files=(f"runs/{name}",)) for name in ("a", "b")]
    outcome = run_sweep(tasks, tmp_path, RayConfig(shared_filesystem=False))
    assert outcome.failures == {}
    assert all(Path(root) != tmp_path for root in outcome.values.values())  # they worked elsewhere
    assert (tmp_path / "runs" / "a" / "logs" / "log.txt").read_text() == "a from partial"
    assert (tmp_path / "runs" / "b" / "logs" / "log.txt").read_text() == "b from fresh"
    assert (tmp_path / "runs" / "b" / "result.json").is_file()
    assert not list(Path(outcome.values["runs/b"]).glob("runs/b/*"))  # the scratch copy is cleaned up


def test_tasks_must_come_after_what_they_need(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not listed before it"):
        run_sweep([SweepTask("run", print, needs=("session",)), SweepTask("session", print)], tmp_path, RayConfig())
    with pytest.raises(ValueError, match="two tasks"):
        run_sweep([SweepTask("run", print), SweepTask("run", print)], tmp_path, RayConfig())
