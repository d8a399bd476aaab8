"""FSCIL runs on tiny cached features: sessions, scores, held-out subjects, the continual references."""

from __future__ import annotations

import json

import pytest
import torch

import cfer.fewshot.fscil as fscil_module
from cfer.fewshot import (
    BaseSession,
    FeatureSet,
    FSCILConfig,
    reference_results,
    run_fscil_method,
)
from cfer.models.heads import LinearHead

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

BASIC = ("b0", "b1", "b2")
COMPOUND = ("c0", "c1", "c2")
CLASSES = BASIC + COMPOUND
DIM = 8


def features(subjects: range, seed: int) -> FeatureSet:
    generator = torch.Generator().manual_seed(seed)
    targets = torch.arange(len(CLASSES)).repeat(len(subjects))
    subject_ids = torch.tensor(list(subjects)).repeat_interleave(len(CLASSES))
    values = 2 * torch.eye(len(CLASSES), DIM)[targets] + 0.3 * torch.randn(len(targets), DIM, generator=generator)
    return FeatureSet(values, targets, subject_ids, CLASSES)


def base_session(pool: FeatureSet) -> BaseSession:
    head = LinearHead(DIM, len(BASIC))
    with torch.no_grad():
        head.fc.weight.copy_(3 * torch.eye(len(BASIC), DIM))
        head.fc.bias.zero_()
    basic = pool.targets < len(BASIC)
    return BaseSession(head.eval(), pool.features[basic], pool.targets[basic])


def test_imprinting_runs_every_session_and_scores_all_classes_seen():
    pool, held_out = features(range(6), 0), features(range(10, 16), 1)
    config = FSCILConfig(n_way=1, shots=[1, 3], orders=2, seeds=2)
    result = run_fscil_method("imprint", base_session(pool), pool, held_out, BASIC, COMPOUND, config)
    assert set(result["per_shot"]) == {"1", "3"}
    entry = result["per_shot"]["3"]
    assert len(entry["runs"]) == 4 and {(r["order"], r["seed"]) for r in entry["runs"]} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    for run in entry["runs"]:
        assert [s["classes_seen"] for s in run["sessions"]] == [3, 4, 5, 6]
        assert sorted(run["class_order"]) == sorted(COMPOUND)
        assert run["sessions"][0]["novel_accuracy"] is None
    summary = entry["summary"]
    assert len(summary["per_session"]) == 4
    assert summary["final_accuracy"]["mean"] > 0.9 and summary["final_harmonic_mean"]["mean"] > 0.9  # separable classes
    assert summary["final_accuracy"]["n"] == 4


def test_the_paper_method_forgets_and_the_scores_show_it():
    pool, held_out = features(range(6), 0), features(range(10, 16), 1)
    config = FSCILConfig(n_way=1, shots=[3], orders=1, seeds=2)
    result = run_fscil_method("paper", base_session(pool), pool, held_out, BASIC, COMPOUND, config,
                              method_options={"steps": 60, "lr": 5e-2})
    summary = result["per_shot"]["3"]["summary"]
    # trained on the newest class's shots alone, the head answers that class: base accuracy collapses
    assert summary["final_base_accuracy"]["mean"] < 0.5 < summary["per_session"][0]["base_accuracy"]["mean"]
    assert summary["performance_drop"]["mean"] > 0.3


def test_shots_come_from_the_pool_and_never_from_held_out_subjects(monkeypatch):
    pool, held_out = features(range(6), 0), features(range(10, 16), 1)
    seen = []

    class Recording(fscil_module.SessionSampler):
        def sessions(self, order, shot_seed):
            drawn = super().sessions(order, shot_seed)
            seen.extend(int(pool.subject_ids[p]) for s in drawn for p in s.support)
            return drawn

    monkeypatch.setattr(fscil_module, "SessionSampler", Recording)
    run_fscil_method("teen", base_session(pool), pool, held_out, BASIC, COMPOUND,
                     FSCILConfig(n_way=3, shots=[2], orders=1, seeds=2))
    assert seen and set(seen) <= set(range(6))


def test_missing_classes_and_mismatched_sets_are_errors():
    pool, held_out = features(range(6), 0), features(range(10, 16), 1)
    with pytest.raises(ValueError, match="not in the data"):
        run_fscil_method("imprint", base_session(pool), pool, held_out, BASIC, COMPOUND,
                         FSCILConfig(classes=["c9"], orders=1, seeds=1))
    other = FeatureSet(held_out.features, held_out.targets, held_out.subject_ids, tuple(reversed(CLASSES)))
    with pytest.raises(ValueError, match="same classes"):
        run_fscil_method("imprint", base_session(pool), pool, other, BASIC, COMPOUND, FSCILConfig(orders=1, seeds=1))


def test_reference_results_summarise_a_continual_run(tmp_path):
    run = {"final_accuracy": 0.4, "final_basic_accuracy": 0.5, "final_compound_accuracy": 0.3,
           "step_accuracy": [0.8, 0.5, 0.4], "average_step_accuracy": 0.5667, "complete": True}
    results = {"subjects": {"test": [3, 1]}, "strategies": {"cfer": {"runs": [run, {**run, "final_accuracy": 0.2,
                                                                                      "step_accuracy": [0.8, 0.3, 0.2]}]}}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    (reference,) = reference_results([tmp_path], held_out_subjects=[1, 3])
    assert reference["strategy"] == "cfer" and reference["runs"] == 2
    assert reference["final_accuracy"] == pytest.approx(0.3)
    assert reference["step_accuracy"] == pytest.approx([0.8, 0.4, 0.3])
    assert reference["final_harmonic_mean"] == pytest.approx(2 * 0.5 * 0.3 / 0.8)
    assert reference["same_test_subjects"] is True
    assert reference_results([tmp_path], held_out_subjects=[1, 2])[0]["same_test_subjects"] is False
    with pytest.raises(FileNotFoundError, match="reference_runs"):
        reference_results([tmp_path / "missing"])
