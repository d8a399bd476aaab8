"""cfer distill end to end on tiny synthetic data: every model trained, scored, reported and reused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cfer.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--subjects", "16", "--epochs", "3", "--device", "cpu", "--set", "data.size=32", "--set", "folds=4",
        "--set", "progress=false",
        "--set", "teachers=[{backbone: test_efficientnet, size: 32, trainable_blocks: 1, pretrained: none}, "
                 "{backbone: test_efficientnet, size: 32, trainable_blocks: 2, pretrained: none}]",
        "--set", "student={backbone: test_efficientnet, size: 16, trainable_blocks: 1, pretrained: none}"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("distill")
    assert main(["distill", "--out", str(out), *TINY]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_every_model_is_scored_and_costed(finished: tuple[Path, dict]) -> None:
    out, summary = finished
    names = list(summary["results"])
    assert names == ["teacher 0 (test_efficientnet @ 32)", "teacher 1 (test_efficientnet @ 32)", "ensemble",
                     "student no-kd", "student kd", "student kd-bounded", "student ensemble"]
    for record in summary["results"].values():
        assert 0 <= record["accuracy"] <= 1 and set(record["affect"]) == {"valence", "arousal"}
        assert {"parameters", "macs", "latency_ms", "images_per_second"} <= set(record["cost"])
    ensemble = summary["results"]["ensemble"]["cost"]["macs"]
    teachers = [summary["results"][name]["cost"]["macs"] for name in names[:2]]
    assert ensemble == pytest.approx(sum(teachers))
    student = summary["results"]["student kd"]["cost"]["macs"]
    assert student < teachers[0]  # 16 px instead of 32
    headline = summary["headline"][f"student kd vs {summary['best_teacher']}"]
    assert headline["compute_ratio"] == pytest.approx(summary["results"][summary["best_teacher"]]["cost"]["macs"] / student)
    for name in ("results.md", "accuracy_vs_macs.png", "teachers/0/model.safetensors",
                 "students/kd-bounded/model.safetensors"):
        assert (out / name).is_file()


def test_a_rerun_reuses_the_finished_models(finished: tuple[Path, dict], capsys) -> None:
    out, summary = finished
    stamp = (out / "students/ensemble/metrics.json").stat().st_mtime_ns
    assert main(["distill", "--out", str(out), *TINY]) == 0
    assert (out / "students/ensemble/metrics.json").stat().st_mtime_ns == stamp
    rerun = json.loads((out / "results.json").read_text())
    assert rerun["results"]["student ensemble"]["accuracy"] == summary["results"]["student ensemble"]["accuracy"]


def test_distill_help_documents_every_setting(capsys) -> None:
    import dataclasses

    from cfer.distill import DistillConfig

    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    text = capsys.readouterr().out
    for item in dataclasses.fields(DistillConfig):
        assert f"  {item.name}" in text


def test_finished_checkpoints_serve_as_teachers(finished: tuple[Path, dict], tmp_path: Path) -> None:
    out, summary = finished
    checkpoints = [str(out / "teachers" / str(k) / "model.safetensors") for k in range(2)]
    position = TINY.index(next(argument for argument in TINY if argument.startswith("teachers=")))
    arguments = TINY[: position - 1] + TINY[position + 1 :]  # without its "--set teachers=..."
    assert main(["distill", "--out", str(tmp_path / "reuse"), *arguments, "--set", "teachers=[]", "--set",
                 f"teacher_checkpoints=[{', '.join(checkpoints)}]", "--set", "students=[kd]"]) == 0
    reused = json.loads((tmp_path / "reuse" / "results.json").read_text())["results"]
    first = summary["results"]["teacher 0 (test_efficientnet @ 32)"]
    assert reused["teacher 0 (0/model.safetensors)"]["accuracy"] == pytest.approx(first["accuracy"])
    assert list(reused)[-1] == "student kd"
