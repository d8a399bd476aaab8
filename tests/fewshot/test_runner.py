"""run_fewshot end to end on tiny synthetic data: a one-fold basic phase, every protocol, the reports, resume."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import cfer.fewshot.runner as runner_module
from cfer.config import load_config
from cfer.data.sources import DataConfig
from cfer.fewshot import (
    EpisodicConfig,
    FewShotConfig,
    FSCILConfig,
    PaperProtocolConfig,
    default_fewshot_basic_phase,
    format_fewshot_summary,
    run_fewshot,
)
from cfer.models.classifier import ModelConfig
from cfer.taxonomy import BASIC
from cfer.training.basic import BasicPhaseConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

FAST = {"paper": {"steps": 3}, "paper+memory": {"steps": 3}, "imprint-ft": {"steps": 3}}


def tiny_config(**changes) -> FewShotConfig:
    settings = dict(
        basic=BasicPhaseConfig(data=DataConfig(size=32, subjects=12), model=ModelConfig(pretrained="none"),
                               folds=3, fold=0, head_epochs=2, finetune_epochs=1, patience=1, batch_size=16,
                               progress=False),
        data=DataConfig(size=32, subjects=16),
        method_options=FAST,
        paper=PaperProtocolConfig(shots=[1, "all"], seeds=2, classes=["happily_surprised", "awed"]),
        fscil=FSCILConfig(n_way=5, shots=[1], orders=1, seeds=2),
        episodic=EpisodicConfig(n_way=3, shots=[1, 2], n_query=2, episodes=8),
        device="cpu",
        progress=False,
    )
    settings.update(changes)
    return FewShotConfig(**settings)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("fewshot")
    return out, run_fewshot(tiny_config(), out)


def test_writes_every_report(finished):
    out, _ = finished
    for name in ("config.yaml", "results.json", "results.md", "accuracy_vs_shots.png", "accuracy_vs_session.png",
                 "basic/model.safetensors", "features.pt", "parts/fscil/teen.json", "parts/paper/paper.json",
                 "parts/episodic.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "results.json").read_text())["paper"]["shots"] == ["1", "all"]
    markdown = (out / "results.md").read_text()
    assert "balanced acc." in markdown and "3-way 1-shot" in markdown and "final harmonic mean" in markdown
    assert not list(out.rglob(".*.tmp"))  # atomic writes leave no temporary files behind


def test_summary_holds_every_protocol_and_method(finished):
    _, summary = finished
    paper = summary["paper"]
    assert list(paper["methods"]) == list(FewShotConfig().methods)
    assert len(paper["methods"]["imprint"]["runs"]) == 2 * 2 * 2
    for row in paper["methods"]["teen"]["per_shot"].values():
        assert {"new_class_only_accuracy", "balanced_accuracy", "basic_accuracy"} <= set(row)
    fscil = summary["fscil"]
    assert fscil["n_way"] == 5 and set(fscil["methods"]) == set(paper["methods"])
    per_session = fscil["methods"]["imprint"]["per_shot"]["1"]["summary"]["per_session"]
    assert len(per_session) == 1 + 15 // 5
    episodic = summary["episodic"]
    assert set(episodic["results"]) == {"untrained", "basic"}  # pretrained='none' names the other backbone
    assert set(episodic["results"]["basic"]["linear"]) == {"3-way 1-shot", "3-way 2-shot"}
    assert summary["subjects"]["held_out"] >= 4  # the basic test fold and the 4 subjects it never had
    text = format_fewshot_summary(summary)
    assert "new-class-only" in text and "FSCIL" in text and "basic - imagenet" in text


def test_a_rerun_reuses_the_features_and_finished_parts(finished, monkeypatch):
    out, first = finished

    def must_not_run(*args, **kwargs):
        raise AssertionError("recomputed a finished part")

    for name in ("run_paper_protocol", "run_fscil_method", "_episodic", "load_dataset", "extract_features"):
        monkeypatch.setattr(runner_module, name, must_not_run)
    again = run_fewshot(tiny_config(), out)
    assert again["fscil"]["methods"] == first["fscil"]["methods"] and again["paper"] == first["paper"]


def test_a_part_is_keyed_by_the_resolved_method_settings_defaults_included(finished):
    out, _ = finished
    data = runner_module._from_stored(runner_module._read_cache(out / "features.pt"), "held-out")

    def key(**teen):
        return runner_module._settings(tiny_config(method_options={**FAST, "teen": teen}), data, "fscil", "teen")

    # a default said aloud is the same part; a changed default (or option) is another one
    assert key() == key(shift_weight=0.5) and key()["method_options"]["shift_weight"] == 0.5
    assert key() != key(shift_weight=0.3)


def test_compose_reads_multi_layer_features_standardised_on_the_base_images(finished, tmp_path):
    out, first = finished
    stored = runner_module._read_cache(out / "features.pt")
    layers, pooled = stored["backbones"]["layers"], stored["backbones"]["basic"]
    assert layers["features"].shape[1] > pooled["features"].shape[1] and torch.equal(layers["targets"], pooled["targets"])
    base = stored["pool"] & (pooled["targets"] < len(BASIC))  # the classes are BASIC, then the compounds
    rows = layers["features"][base]
    torch.testing.assert_close(rows.mean(0), torch.zeros(rows.shape[1]), atol=1e-3, rtol=0)
    assert not torch.allclose(layers["features"][~base].mean(0), torch.zeros(rows.shape[1]), atol=1e-3)
    config = tiny_config(basic_run=str(out / "basic"), methods=["compose"], paper=PaperProtocolConfig(enabled=False),
                         episodic=EpisodicConfig(enabled=False),
                         method_options={"compose": {"features": "pooled"}})
    on_pooled = run_fewshot(config, tmp_path / "pooled")["fscil"]["methods"]["compose"]["per_shot"]
    assert "layers" not in runner_module._read_cache(tmp_path / "pooled" / "features.pt")["backbones"]
    assert on_pooled != first["fscil"]["methods"]["compose"]["per_shot"]


def test_reuses_a_basic_run_and_evaluates_on_validation_subjects(finished, tmp_path):
    out, first = finished
    config = tiny_config(basic_run=str(out / "basic"), episodic=EpisodicConfig(enabled=False),
                         fscil=FSCILConfig(enabled=False))
    summary = run_fewshot(config, tmp_path / "same")
    assert not (tmp_path / "same" / "basic").exists()
    def figures(result):
        return {method: entry["per_shot"] for method, entry in result["paper"]["methods"].items()}

    assert figures(summary) == figures(first)  # same teacher, same seeds: same numbers
    assert "episodic" not in summary and "fscil" not in summary
    validation = run_fewshot(dataclasses.replace(config, evaluate_on="validation"), tmp_path / "validation")
    assert "held_out" not in validation["subjects"] and validation["subjects"]["validation"] >= 1
    assert figures(validation) != figures(first)


def test_mismatched_data_and_bad_methods_are_refused(finished, tmp_path):
    out, _ = finished
    config = tiny_config(basic_run=str(out / "basic"), data=DataConfig(size=32, subjects=16, seed=1))
    with pytest.raises(ValueError, match="seed"):
        run_fewshot(config, tmp_path)
    with pytest.raises(KeyError, match="known few-shot methods"):
        run_fewshot(tiny_config(methods=["imprint", "teeen"], method_options={}), tmp_path)
    with pytest.raises(ValueError, match="methods: \\[paper\\]"):
        run_fewshot(tiny_config(paper=PaperProtocolConfig(trainable_blocks=1)), tmp_path)


def test_shipped_config_loads_and_the_default_basic_phase_is_train_incrementals():
    from cfer.continual.config import default_basic_phase

    config = load_config(FewShotConfig, "configs/fewshot.yaml")
    assert config.paper.shots == [1, 3, 5, "all"] and config.episodic.shots == [1, 5] and config.fscil.shots == [5]
    assert default_fewshot_basic_phase() == default_basic_phase()
    assert config.basic == default_basic_phase() and config.data == default_basic_phase().data


def test_runs_on_rafdb_with_its_official_split(tmp_path, fake_rafdb):
    root = str(fake_rafdb(tmp_path / "RAF-DB", subjects=8, test_subjects=3, size=32))
    rafdb = DataConfig(source="rafdb", root=root, size=32)
    config = tiny_config(basic=dataclasses.replace(tiny_config().basic, data=rafdb, val_fraction=0.25), data=rafdb,
                         methods=["imprint", "teen"], method_options={},
                         paper=PaperProtocolConfig(shots=[1], seeds=1, classes=["happily_surprised"]),
                         fscil=FSCILConfig(n_way=1, shots=[1], orders=1, seeds=1),
                         episodic=EpisodicConfig(n_way=3, shots=[1], n_query=2, episodes=4, subject_disjoint=False))
    summary = run_fewshot(config, tmp_path / "out")
    # shots come from RAF-DB's train_ images, scores from its test_ images (3 of 8 per class)
    assert summary["images"]["held_out"] == 3 * 17 and not summary["subjects_known"]
    assert "happily_surprised" in json.dumps(summary["paper"])
    assert len(summary["fscil"]["methods"]["teen"]["per_shot"]["1"]["summary"]["per_session"]) == 1 + 11  # 11 compounds
