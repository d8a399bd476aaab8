"""run_incremental end to end on tiny data: reports, and resume giving the same metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from cfer.config import load_config
from cfer.continual import (
    IncrementalConfig,
    format_incremental_summary,
    run_incremental,
)
from cfer.taxonomy import BASIC, COMPOUND
from strategies import STRATEGIES as REGISTRY

# every registered strategy but the variants of cfer, which differ from it in a config field only; but for
# cfer-ridge, whose exemplar head is refitted from the memory when a run resumes
STRATEGIES = [name for name in REGISTRY if not REGISTRY[name].defaults] + ["cfer-ridge"]
# offline strategies train in one call, and a strategy without a state restarts its run
RESUMABLE = [name for name in STRATEGIES if REGISTRY[name].state is not None and not REGISTRY[name].offline]
RESTARTING = [name for name in STRATEGIES if REGISTRY[name].state is None and not REGISTRY[name].offline]
TINY = [
    "basic.data.subjects=10",
    "basic.data.size=32",
    "basic.model.backbone=test_efficientnet",
    "basic.model.pretrained=none",
    "basic.folds=3",
    "basic.val_fraction=0.25",
    "basic.head_epochs=1",
    "basic.finetune_epochs=1",
    "epochs=1",
    "patience=1",
    "batch_size=16",
    "confusion_plots=last-step",  # a figure per step costs more than the tiny step itself
    f"strategies=[{', '.join(STRATEGIES)}]",
]


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("full")
    return out, run_incremental(load_config(IncrementalConfig, overrides=TINY), out)


def _step_metrics(summary: dict) -> dict:
    return {
        name: [
            (step["accuracy"], step["experience_accuracy"], step["confusion_matrix"], step["epochs"])
            for step in entry["runs"][0]["steps"]
        ]
        for name, entry in summary["strategies"].items()
    }


def test_reports_are_written(full_run: tuple[Path, dict]) -> None:
    out, summary = full_run
    assert summary["complete"]
    for name in ("results.json", "results.md", "accuracy_vs_classes.png", "config.yaml", "basic/model.safetensors"):
        assert (out / name).is_file(), name
    assert json.loads((out / "results.json").read_text())["strategies"].keys() == set(STRATEGIES)
    for name in STRATEGIES:
        run = summary["strategies"][name]["runs"][0]
        assert len(run["steps"]) == 1 + len(COMPOUND)
        assert [step["num_classes"] for step in run["steps"]] == list(range(len(BASIC), len(BASIC) + len(COMPOUND) + 1))
        assert all(0.0 <= step["accuracy"] <= 1.0 for step in run["steps"])
        assert run["steps"][0]["epochs"] == 0  # the basic phase trained experience 0
        assert (out / "runs" / name / "order_0" / "confusion" / "step_15.png").is_file()
        assert (out / "runs" / name / "order_0" / "result.json").is_file()
        assert not (out / "runs" / name / "order_0" / "state.pt").exists()
        assert list((out / "runs" / name / "order_0" / "logs").glob("session_0/csv/*.csv"))
        aggregate = summary["strategies"][name]["aggregate"]
        assert aggregate["overall_accuracy"] == pytest.approx(sum(run["step_accuracy"]) / len(run["step_accuracy"]))
        assert aggregate["overall_accuracy_std"] == 0.0  # one order
    markdown = (out / "results.md").read_text()
    assert all(f"| {name} |" in markdown for name in STRATEGIES)
    assert "× naive" in markdown
    text = format_incremental_summary(summary, out)
    assert "cfer: overall accuracy" in text


def test_step_time_is_reported_relative_to_naive(full_run: tuple[Path, dict]) -> None:
    _, summary = full_run
    naive = summary["strategies"]["naive"]["aggregate"]["step_seconds"]["mean"]
    for name in [n for n in STRATEGIES if not REGISTRY[n].offline]:  # offline ones train once (joint test)
        entry = summary["strategies"][name]
        steps = entry["runs"][0]["steps"][1:]  # the incremental steps
        mean = sum(step["wall_seconds"] for step in steps) / len(steps)
        assert entry["aggregate"]["step_seconds"]["mean"] == pytest.approx(mean)
        assert entry["step_seconds_vs_naive"] == pytest.approx(mean / naive)


def test_cfer_grows_one_unit_per_step_and_keeps_a_memory(full_run: tuple[Path, dict]) -> None:
    _, summary = full_run
    steps = summary["strategies"]["cfer"]["runs"][0]["steps"]
    # the confusion matrix of step k only has predictions among the classes seen so far
    for step in steps:
        seen = step["num_classes"]
        assert sum(sum(row[seen:]) for row in step["confusion_matrix"]) == 0


def test_a_killed_run_resumes_to_the_same_metrics(full_run: tuple[Path, dict], tmp_path: Path) -> None:
    full_out, full_summary = full_run
    # same basic phase (it is deterministic, and copying it saves the time of training it again)
    shutil.copytree(full_out / "basic", tmp_path / "basic")
    resumable = TINY + [f"strategies=[{', '.join(RESUMABLE)}]"]
    partial = run_incremental(load_config(IncrementalConfig, overrides=resumable + ["max_experiences=3"]), tmp_path)
    assert not partial["complete"]
    for name in RESUMABLE:
        state = tmp_path / "runs" / name / "order_0" / "state.pt"
        assert state.is_file()
        saved = torch.load(state, weights_only=True)  # no unpickling of arbitrary objects
        assert len(saved["steps"]) == 3
    resumed = run_incremental(load_config(IncrementalConfig, overrides=resumable), tmp_path)
    assert resumed["complete"]
    expected = _step_metrics(full_summary)
    assert _step_metrics(resumed) == {name: expected[name] for name in RESUMABLE}
    assert (tmp_path / "runs" / "cfer" / "order_0" / "logs" / "session_1").is_dir()


@pytest.mark.parametrize("name", RESTARTING)
def test_a_strategy_without_saved_state_restarts_its_run(
    full_run: tuple[Path, dict], tmp_path: Path, name: str
) -> None:
    full_out, full_summary = full_run
    shutil.copytree(full_out / "basic", tmp_path / "basic")
    overrides = TINY + [f"strategies=[{name}]"]
    run_incremental(load_config(IncrementalConfig, overrides=overrides + ["max_experiences=2"]), tmp_path)
    assert not (tmp_path / "runs" / name / "order_0" / "state.pt").exists()
    resumed = run_incremental(load_config(IncrementalConfig, overrides=overrides), tmp_path)
    assert _step_metrics(resumed)[name] == _step_metrics(full_summary)[name]


def test_a_run_with_other_settings_is_refused(full_run: tuple[Path, dict]) -> None:
    out, _ = full_run
    with pytest.raises(ValueError, match="lr"):
        run_incremental(load_config(IncrementalConfig, overrides=TINY + ["lr=0.5"]), out)


def test_unknown_strategy_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="known strategies"):
        run_incremental(load_config(IncrementalConfig, overrides=TINY + ["strategies=[der]"]), tmp_path)


def test_subject_split_reproduces_the_basic_phase_split(full_run: tuple[Path, dict]) -> None:
    from cfer.continual import subject_split
    from cfer.data.synthetic import SyntheticConfig, SyntheticFaces

    out, summary = full_run
    recorded = json.loads((out / "basic" / "fold_0" / "metrics.json").read_text())["subjects"]
    faces = SyntheticFaces(SyntheticConfig(subjects=10, size=32, categories=BASIC + COMPOUND))
    computed = subject_split(faces, BASIC, fold=0, n_folds=3, val_fraction=0.25, seed=0)
    assert computed == {"train": recorded["train"], "valid": recorded["val"], "test": recorded["test"]}
    assert summary["subjects"] == computed


def test_joint_trains_once_on_the_whole_stream_and_is_evaluated_on_every_prefix(full_run: tuple[Path, dict]) -> None:
    out, summary = full_run
    entry = summary["strategies"]["joint"]
    run = entry["runs"][0]
    assert run["offline"] and entry["aggregate"]["step_seconds"]["mean"] is None
    assert entry["step_seconds_vs_naive"] is None
    # one model: each experience scores the same whatever prefix it is evaluated in
    rows = [step["experience_accuracy"] for step in run["steps"]]
    for index in range(len(rows)):
        assert {row[index] for row in rows[index:]} == {rows[-1][index]}
    assert run["average_forgetting"] == pytest.approx(0.0)
    assert [step["epochs"] > 0 for step in run["steps"]] == [False] * len(COMPOUND) + [True]
    # it trained all 21 classes at once: its predictions on the basic test images reach compound units
    from cfer.models.checkpoint import load_checkpoint

    model, metadata = load_checkpoint(out / "runs" / "joint" / "order_0" / "model.safetensors")
    assert model.num_classes == len(BASIC) + len(COMPOUND) == len(metadata["classes"])


def test_the_feature_cache_changes_no_result(full_run: tuple[Path, dict], tmp_path: Path) -> None:
    # the full run trained on cached trunk activations (the default without augmentation), with the
    # teacher's logits kept per sample; the same strategies on images, computing both every batch:
    full_out, full_summary = full_run
    assert full_summary["feature_cache"]["used"] and full_summary["feature_cache"]["bytes"] > 0
    shutil.copytree(full_out / "basic", tmp_path / "basic")
    names = ["cfer", "gdumb"]  # distillation, teacher memo and PSMR ranking; a model replaced every step
    overrides = TINY + [f"strategies=[{', '.join(names)}]", "feature_cache.mode=never",
                        "strategy_options={cfer: {memoize_teacher: false}}"]
    uncached = run_incremental(load_config(IncrementalConfig, overrides=overrides), tmp_path)
    assert not uncached["feature_cache"]["used"] and "never" in uncached["feature_cache"]["reason"]
    expected = _step_metrics(full_summary)
    assert _step_metrics(uncached) == {name: expected[name] for name in names}


def test_a_strategy_that_hooks_trunk_modules_reads_them_from_a_cache_cut_before_them(
    full_run: tuple[Path, dict], tmp_path: Path
) -> None:
    full_out, full_summary = full_run
    assert "ranpac-layers" in full_summary["strategies"]  # ran on the cache, cut before the blocks it hooks
    shutil.copytree(full_out / "basic", tmp_path / "basic")
    on_images = TINY + ["strategies=[ranpac-layers]", "feature_cache.mode=never"]
    summary = run_incremental(load_config(IncrementalConfig, overrides=on_images), tmp_path)
    cached, uncached = (s["strategies"]["ranpac-layers"]["runs"][0] for s in (full_summary, summary))
    assert summary["feature_cache"]["used"] is False and full_summary["feature_cache"]["used"] is True
    assert [step["accuracy"] for step in uncached["steps"]] == [step["accuracy"] for step in cached["steps"]]


def test_early_stopping_and_ranpacs_ridge_never_read_the_test_subjects(
    full_run: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test subjects' faces replaced by noise: every choice of a step comes out the same.

    Mutation check, by hand when this test was written: pointing the runner's validation split at
    the test subjects makes it fail (the loss history and λ move).
    """
    from cfer.continual import runner
    from cfer.core.prototypes import RandomProjectionRidge
    from tests.training.test_no_test_leakage import noised

    full_out, full_summary = full_run
    test_subjects = torch.tensor(full_summary["subjects"]["test"])
    chosen: list[float] = []
    choose = RandomProjectionRidge.choose_ridge
    monkeypatch.setattr(RandomProjectionRidge, "choose_ridge",
                        lambda self, *args, **kwargs: chosen.append(choose(self, *args, **kwargs)) or chosen[-1])
    load = runner.load_dataset
    # the loss, not the accuracy: a tiny model's first epochs give every face one class, on any subjects
    overrides = TINY + ["strategies=[cfer, ranpac]", "max_experiences=3", "epochs=3", "patience=2",
                        "early_stopping_metric=loss", "strategy_options={ranpac: {ridge_on: validation}}"]
    runs = {}
    for name, poison in (("clean", False), ("noised", True)):
        def loaded(*args, poison=poison, **kwargs):
            dataset = load(*args, **kwargs)
            return noised(dataset, torch.isin(dataset.subject_ids, test_subjects)) if poison else dataset
        monkeypatch.setattr(runner, "load_dataset", loaded)
        shutil.copytree(full_out / "basic", tmp_path / name / "basic")
        runs[name] = run_incremental(load_config(IncrementalConfig, overrides=overrides), tmp_path / name)
    steps = [run["strategies"]["cfer"]["runs"][0]["steps"] for run in runs.values()]
    assert steps[0][1]["valid_history"]  # it did early-stop on something
    assert [(s["epochs"], s["best_epoch"], s["valid_history"]) for s in steps[0]] == \
           [(s["epochs"], s["best_epoch"], s["valid_history"]) for s in steps[1]]
    assert len(chosen) == 2 and chosen[0] == chosen[1]  # λ, once per run, on the validation subjects
    accuracies = [[s["accuracy"] for s in run["strategies"]["ranpac"]["runs"][0]["steps"]] for run in runs.values()]
    assert accuracies[0] != accuracies[1]  # the noise did reach the test subjects
