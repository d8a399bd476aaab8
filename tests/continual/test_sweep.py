"""``train-incremental`` / ``compare`` on a local Ray: the same results as in the process, reruns, a killed worker."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cfer.cli import main
from cfer.config import load_config
from cfer.continual import IncrementalConfig, run_incremental
from cfer.continual.runner import open_session, run_in_session
from cfer.continual.sweep import run_incremental_sweep
from cfer.distributed import RayConfig, SweepTask, run_sweep
from strategies.checkpoint import StreamCheckpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # the runs on Ray use one thread too (RayConfig's default)

TINY = [
    "basic.data.subjects=10", "basic.data.size=32", "basic.model.backbone=test_efficientnet",
    "basic.model.pretrained=none", "basic.folds=3", "basic.val_fraction=0.25", "basic.head_epochs=1",
    "basic.finetune_epochs=1", "epochs=1", "patience=1", "batch_size=16", "confusion_plots=last-step",
    "strategies=[cfer, ncm]",  # two runs: the paper's strategy, which trains, and one that only computes means
]


def _config() -> IncrementalConfig:
    return load_config(IncrementalConfig, overrides=TINY)


def _metrics(run: dict) -> dict:
    """A run's result without its timings."""
    def strip(record: dict) -> dict:
        return {key: value for key, value in record.items() if "seconds" not in key}

    return strip(run) | {"steps": [strip(step) for step in run["steps"]]}


def _files(out: Path) -> list[str]:
    """The files of a run directory; TensorBoard names its event files by clock and process."""
    return sorted(str(path.relative_to(out).parent / "events") if "tfevents" in path.name else
                  str(path.relative_to(out)) for path in out.rglob("*") if path.is_file())


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("in_process")
    return out, run_incremental(_config(), out)


@pytest.fixture(scope="module")
def on_ray(ray_session, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("on_ray")
    (summary,) = run_incremental_sweep(out, [(_config(), out)], RayConfig())
    return out, summary


def test_a_sweep_on_ray_gives_the_same_files_and_metrics_as_in_the_process(in_process, on_ray) -> None:
    (here, expected), (there, summary) = in_process, on_ray
    assert _files(there) == _files(here)
    for name in ("cfer", "ncm"):
        result = json.loads((there / "runs" / name / "order_0" / "result.json").read_text())
        assert _metrics(result) == _metrics(expected["strategies"][name]["runs"][0])
        aggregate = summary["strategies"][name]["aggregate"]
        assert {k: v for k, v in aggregate.items() if "seconds" not in k} == {
            k: v for k, v in expected["strategies"][name]["aggregate"].items() if "seconds" not in k}
    weights, reference = load_file(there / "runs/cfer/order_0/model.safetensors"), load_file(
        here / "runs/cfer/order_0/model.safetensors")
    assert weights.keys() == reference.keys() and all(torch.equal(weights[k], reference[k]) for k in weights)


def test_a_rerun_on_ray_runs_only_what_is_missing(on_ray, caplog: pytest.LogCaptureFixture) -> None:
    out, summary = on_ray
    shutil.rmtree(out / "runs" / "ncm")
    with caplog.at_level(logging.INFO, logger="cfer.distributed.ray_sweep"):
        (again,) = run_incremental_sweep(out, [(_config(), out)], RayConfig())
    finished = {record.args[0] for record in caplog.records if record.msg.startswith("finished")}
    assert finished == {"session", "runs/ncm/order_0"}  # cfer's run was not run again
    assert {name: _metrics(entry["runs"][0]) for name, entry in again["strategies"].items()} == {
        name: _metrics(entry["runs"][0]) for name, entry in summary["strategies"].items()}


def test_a_run_whose_worker_dies_is_retried_and_resumes_from_its_checkpoint(in_process, ray_session,
                                                                             tmp_path: Path) -> None:
    here, expected = in_process
    shutil.copytree(here / "basic", tmp_path / "basic")  # the same basic phase, without training it again
    config, died = _config(), tmp_path / "died"

    def session(root: Path):
        opened = open_session(config, root)
        opened.basic_model.cpu()
        return opened

    def dies_after_three_steps(root: Path, opened):
        if not died.exists():  # the first attempt: its worker process dies right after step 2's checkpoint
            died.touch()
            save = StreamCheckpoint.save

            def save_then_die(self, strategy, model, steps):
                save(self, strategy, model, steps)
                if len(steps) == 3:
                    os._exit(1)

            StreamCheckpoint.save = save_then_die
        return run_in_session(opened, config, root, "cfer", 0)

    tasks = [SweepTask("session", session), SweepTask("cfer", dies_after_three_steps, needs=("session",))]
    outcome = run_sweep(tasks, tmp_path, RayConfig(max_retries=1))
    assert outcome.failures == {} and died.exists()
    assert _metrics(outcome.values["cfer"]) == _metrics(expected["strategies"]["cfer"]["runs"][0])
    assert (tmp_path / "runs" / "cfer" / "order_0" / "logs" / "session_1").is_dir()  # the retry resumed


def test_compare_takes_the_ray_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import cfer.continual.compare as compare

    seen = []
    monkeypatch.setattr(compare, "run_incremental_sweep", lambda root, sessions, ray: seen.append(ray) or
                        [{"strategies": {}} for _ in sessions])
    monkeypatch.setattr(compare, "plot_accuracy_curves", lambda *args: None)
    main(["compare", "--out", str(tmp_path), "--tested", "ncm", "--recommended", "ncm", "--others", "",
          "--set", "reference_strategies=[]", "--ray", "--ray-threads", "2", "--ray-gpus", "0.5"])
    assert seen == [RayConfig(threads_per_task=2, gpus_per_task=0.5)]
    main(["compare", "--out", str(tmp_path), "--tested", "ncm", "--recommended", "ncm", "--others", "",
          "--set", "reference_strategies=[]", "--ray", "ray://head:10001"])
    assert seen[-1] == RayConfig(address="ray://head:10001")
