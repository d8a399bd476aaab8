"""run_fewshot end to end on tiny synthetic data: a one-fold basic phase, both protocols, the reports."""

from __future__ import annotations

import dataclasses
import json

import pytest

from cfer.config import load_config
from cfer.data.sources import DataConfig
from cfer.fewshot import (
    EpisodicConfig,
    FewShotConfig,
    PaperProtocolConfig,
    format_fewshot_summary,
    run_fewshot,
)
from cfer.models.classifier import ModelConfig
from cfer.training.basic import BasicPhaseConfig


def tiny_config(**changes) -> FewShotConfig:
    settings = dict(
        basic=BasicPhaseConfig(data=DataConfig(size=32, subjects=12), model=ModelConfig(pretrained="none"),
                               folds=3, fold=0, head_epochs=2, finetune_epochs=1, patience=1, batch_size=16,
                               progress=False),
        data=DataConfig(size=32, subjects=16),
        paper=PaperProtocolConfig(shots=[1, "all"], seeds=2, classes=["happily_surprised", "awed"], steps=3),
        episodic=EpisodicConfig(n_way=3, shots=[1, 2], n_query=2, episodes=8),
        device="cpu",
    )
    settings.update(changes)
    return FewShotConfig(**settings)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("fewshot")
    return out, run_fewshot(tiny_config(), out)


def test_writes_every_report(finished):
    out, _ = finished
    for name in ("config.yaml", "results.json", "results.md", "accuracy_vs_shots.png", "basic/model.safetensors"):
        assert (out / name).is_file(), name
    assert json.loads((out / "results.json").read_text())["paper"]["shots"] == ["1", "all"]
    markdown = (out / "results.md").read_text()
    assert "balanced acc." in markdown and "3-way 1-shot" in markdown
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files behind


def test_summary_holds_both_protocols_and_both_metrics(finished):
    _, summary = finished
    paper = summary["paper"]
    assert len(paper["runs"]) == 2 * 2 * 2
    for row in paper["per_shot"].values():
        assert {"new_class_only_accuracy", "balanced_accuracy", "basic_accuracy"} <= set(row)
    episodic = summary["episodic"]
    assert set(episodic["results"]) == {"untrained", "basic"}  # pretrained='none' names the other backbone
    assert set(episodic["results"]["basic"]) == {"prototype", "linear"}
    assert set(episodic["results"]["basic"]["linear"]) == {"3-way 1-shot", "3-way 2-shot"}
    assert summary["subjects"]["held_out"] >= 4  # the basic test fold and the 4 subjects it never had
    text = format_fewshot_summary(summary)
    assert "new-class-only" in text and "basic - untrained" not in text and "basic - imagenet" in text


def test_reuses_a_basic_run(finished, tmp_path):
    out, first = finished
    config = tiny_config(basic_run=str(out / "basic"), episodic=EpisodicConfig(enabled=False))
    summary = run_fewshot(config, tmp_path)
    assert not (tmp_path / "basic").exists()
    assert summary["paper"]["per_shot"] == first["paper"]["per_shot"]  # same teacher, same seeds: same numbers
    assert "episodic" not in summary


def test_mismatched_data_is_refused(finished, tmp_path):
    out, _ = finished
    config = tiny_config(basic_run=str(out / "basic"), data=DataConfig(size=32, subjects=16, seed=1))
    with pytest.raises(ValueError, match="seed"):
        run_fewshot(config, tmp_path)


def test_shipped_config_loads():
    config = load_config(FewShotConfig, "configs/fewshot.yaml")
    assert config.paper.shots == [1, 3, 5, "all"] and config.episodic.shots == [1, 5]


def test_runs_on_rafdb_with_its_official_split(tmp_path, fake_rafdb):
    root = str(fake_rafdb(tmp_path / "RAF-DB", subjects=8, test_subjects=3, size=32))
    rafdb = DataConfig(source="rafdb", root=root, size=32)
    config = tiny_config(basic=dataclasses.replace(tiny_config().basic, data=rafdb, val_fraction=0.25), data=rafdb,
                         paper=PaperProtocolConfig(shots=[1], seeds=1, classes=["happily_surprised"], steps=2),
                         episodic=EpisodicConfig(n_way=3, shots=[1], n_query=2, episodes=4, subject_disjoint=False))
    summary = run_fewshot(config, tmp_path / "out")
    # shots come from RAF-DB's train_ images, scores from its test_ images (3 of 8 per class)
    assert summary["images"]["held_out"] == 3 * 17 and not summary["subjects_known"]
    assert "happily_surprised" in json.dumps(summary["paper"])
