"""``torchrun --nproc_per_node 2 -m cfer ...`` with gloo: the basic phase and cfer distill under DDP.

Each launch starts two processes that import torch and timm, so the suite makes two (about 15 s each).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cfer.cli import main
from cfer.config import load_config
from cfer.training.basic import BasicPhaseConfig, run_basic_phase
from cfer.training.loop import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

# dropout off: with it, each rank would draw the masks of its own rows, and no run could equal another
BASIC = ["data.subjects=20", "data.size=32", "data.samples_per_category=2", "model.backbone=test_efficientnet",
         "model.pretrained=none", "model.trainable_blocks=1", "model.dropout=0", "folds=2", "head_epochs=5",
         "finetune_epochs=3", "patience=8", "batch_size=32", "progress=false", "device=cpu"]


def _torchrun(*arguments: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "cfer",
               *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_gloo_ranks_train_the_basic_phase_as_one_process_and_resume_its_state(tmp_path: Path,
                                                                                 monkeypatch) -> None:
    config = load_config(BasicPhaseConfig, overrides=BASIC)
    reference = run_basic_phase(config, tmp_path / "one_process")
    # fold 1 of the torchrun run resumes from a state one process left in its fine-tuning stage
    original, calls = Trainer.train_epoch, {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_basic_phase(load_config(BasicPhaseConfig, overrides=BASIC + ["fold=1"]), tmp_path / "ranks")
    assert (tmp_path / "ranks" / "fold_1" / "state.pt").is_file()

    result = _torchrun("train-basic", "--out", str(tmp_path / "ranks"), *[f"--set={item}" for item in BASIC])
    assert result.stdout.count("basic phase:") == 1  # rank 0 alone reports
    out = tmp_path / "ranks"
    assert sorted(path.name for path in out.iterdir()) == ["config.yaml", "fold_0", "fold_1", "metrics.json",
                                                          "model.safetensors"]
    assert not list(out.rglob("state.pt")) and not list(out.rglob("*.tmp"))
    for fold in (0, 1):
        ours = json.loads((out / f"fold_{fold}" / "metrics.json").read_text())
        theirs = json.loads((tmp_path / "one_process" / f"fold_{fold}" / "metrics.json").read_text())
        # the same global batches in the same order: the curves differ by the sums' rounding only
        assert ours["history"]["val_loss"] == pytest.approx(theirs["history"]["val_loss"], abs=1e-2)
        assert ours["epochs"] == theirs["epochs"]
        images = sum(map(sum, theirs["test"]["confusion_matrix"]))
        assert abs(ours["test"]["accuracy"] - theirs["test"]["accuracy"]) <= 2 / images
    assert json.loads((out / "metrics.json").read_text())["best_fold"] == reference["best_fold"]


DISTILL = ["--subjects", "40", "--epochs", "4", "--device", "cpu", "--set", "data.size=32", "--set", "folds=2",
           "--set", "progress=false", "--set", "students=[kd]",  # dropout off, as above
           "--set", "teachers=[{backbone: test_efficientnet, size: 32, trainable_blocks: 2, pretrained: none, dropout: 0}]",
           "--set", "student={backbone: test_efficientnet, size: 16, trainable_blocks: 1, pretrained: none, dropout: 0}"]


def test_two_gloo_ranks_train_the_distillation_networks_as_one_process(tmp_path: Path) -> None:
    assert main(["distill", "--out", str(tmp_path / "one_process"), *DISTILL]) == 0
    _torchrun("distill", "--out", str(tmp_path / "ranks"), *DISTILL)
    ours, theirs = (json.loads((tmp_path / side / "results.json").read_text())["results"]
                    for side in ("ranks", "one_process"))
    assert list(ours) == list(theirs)
    for name, folder in (("teacher 0 (test_efficientnet @ 32)", "teachers/0"), ("student kd", "students/kd")):
        assert (tmp_path / "ranks" / folder / "model.safetensors").is_file()
        assert ours[name]["accuracy"] == pytest.approx(theirs[name]["accuracy"], abs=1 / 140)  # 140 test images
        assert ours[name]["affect"]["valence"]["rmse"] == pytest.approx(theirs[name]["affect"]["valence"]["rmse"],
                                                                        abs=1e-4)
