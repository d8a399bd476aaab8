"""Faults a user meets, end to end through ``cfer``: damaged model files, a full disk, two runs on one folder.

Each gives a clear message naming the file or folder and a non-zero exit, never a traceback; the
full disk and the killed run leave a folder that the same command, run again, resumes.
"""

import errno
import json
import os
import signal
import subprocess
import sys

import pytest
import safetensors.torch
import torch

from cfer.cli import main
from cfer.io import LOCK_NAME
from cfer.models import ModelConfig, create_model, load_checkpoint, save_checkpoint
from cfer.taxonomy import BASIC

TINY_BASIC = ["--subjects", "6", "--size", "32", "--folds", "2", "--fold", "0", "--set", "head_epochs=2",
              "--set", "finetune_epochs=2", "--set", "model.pretrained=none", "--set", "progress=false"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    model = create_model(ModelConfig(backbone="test_efficientnet", pretrained="none"), len(BASIC))
    return save_checkpoint(model, path, {"classes": list(BASIC), "size": 32})


def _damaged(checkpoint, how: str) -> bytes:
    data = checkpoint.read_bytes()
    header = int.from_bytes(data[:8], "little")
    if how == "truncated":
        return data[: len(data) // 2]
    if how == "header cut":
        return data[: 8 + header // 2]
    if how == "empty":
        return b""
    if how == "garbage header":
        return data[:8] + b"\x00\xff" * (header // 2) + data[8 + header:]
    if how == "a png":
        return b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    if how == "not cfer's":
        return safetensors.torch.save({"weight": torch.zeros(3)}, metadata={"format": "pt"})
    if how == "wrong tensors":
        other = create_model(ModelConfig(backbone="test_efficientnet", pretrained="none"), len(BASIC) + 1)
        state = {key: value.contiguous() for key, value in other.state_dict().items()}
        with safetensors.safe_open(str(checkpoint), "pt") as reader:
            return safetensors.torch.save(state, metadata=reader.metadata())
    raise AssertionError(how)


HOW = ["truncated", "header cut", "empty", "garbage header", "a png", "not cfer's", "wrong tensors"]


@pytest.mark.parametrize("how", HOW)
def test_a_damaged_checkpoint_is_a_value_error_naming_the_file(checkpoint, tmp_path, how):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(_damaged(checkpoint, how))
    with pytest.raises(ValueError, match=r"bad\.safetensors"):
        load_checkpoint(bad)


@pytest.mark.parametrize("command", ["predict", "export", "gradcam"])
@pytest.mark.parametrize("how", ["truncated", "garbage header"])
def test_commands_name_a_damaged_model_and_exit_2(checkpoint, tmp_path, capsys, command, how):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(_damaged(checkpoint, how))
    image = tmp_path / "face.png"
    from PIL import Image
    Image.new("RGB", (48, 48), (120, 100, 90)).save(image)
    arguments = {"predict": ["predict", "--model", str(run), str(image), "--out", str(tmp_path / "out")],
                 "export": ["export", "--model", str(run), "--out", str(tmp_path / "model.onnx")],
                 "gradcam": ["gradcam", "--run", str(run), "--out", str(tmp_path / "cam")]}[command]
    assert main(arguments) == 2
    err = capsys.readouterr().err
    assert f"cfer {command}: error:" in err and str(run / "model.safetensors") in err and "Traceback" not in err


def test_a_damaged_basic_model_stops_train_incremental_with_its_name(tmp_path, capsys):
    out = tmp_path / "incremental"
    assert main(["train-basic", "--out", str(out / "basic"), *TINY_BASIC]) == 0
    model = out / "basic" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:1000])
    status = main(["train-incremental", "--out", str(out), "--subjects", "6", "--size", "32", "--orders", "1",
                   "--set", "basic.folds=2", "--set", "basic.fold=0", "--set", "basic.head_epochs=2",
                   "--set", "basic.finetune_epochs=2", "--set", "basic.model.pretrained=none",
                   "--set", "progress=false"])
    err = capsys.readouterr().err
    assert status == 2 and str(model) in err, err


def test_a_full_disk_is_a_clear_error_and_the_rerun_resumes(tmp_path, monkeypatch, capsys, caplog):
    original, calls = torch.save, {"n": 0}

    def fills_the_disk(obj, file, *args, **kwargs):  # the fold's second resume state meets a full disk
        calls["n"] += 1
        if calls["n"] == 2:
            file.write(b"\0" * 4096)
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", fills_the_disk)
    out = tmp_path / "basic"
    assert main(["train-basic", "--out", str(out), *TINY_BASIC]) == 2
    err = capsys.readouterr().err
    assert "cfer train-basic: error: cannot write" in err and "disk is full" in err and "free" in err, err
    assert str(out) in err and "Traceback" not in err
    assert not [path for path in out.rglob("*") if path.name.endswith(".tmp")]
    assert not (out / LOCK_NAME).exists()

    monkeypatch.setattr(torch, "save", original)
    with caplog.at_level("INFO", logger="cfer.training.basic"):
        assert main(["train-basic", "--out", str(out), *TINY_BASIC]) == 0
    assert "resuming at stage" in caplog.text
    assert (out / "model.safetensors").is_file() and json.loads((out / "metrics.json").read_text())["folds"]


_HOLDER = """
import sys, time
from cfer.io import hold_folder
with hold_folder(sys.argv[1], "cfer train-incremental"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_run_on_a_held_folder_stops_at_once_and_a_killed_holder_is_taken_over(tmp_path, capsys):
    out = tmp_path / "basic"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["train-basic", "--out", str(out), *TINY_BASIC]) == 2
        err = capsys.readouterr().err
        assert f"cfer train-basic: error: {out.resolve()} is in use" in err and f"pid {holder.pid}" in err
        assert not (out / "fold_0").exists()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        assert main(["train-basic", "--out", str(out), *TINY_BASIC]) == 0
    finally:
        holder.kill()
        holder.wait()
    assert (out / "model.safetensors").is_file() and not (out / LOCK_NAME).exists()


def test_under_torchrun_only_rank_0_holds_the_folder(tmp_path, monkeypatch, capsys):
    out = tmp_path / "basic"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("RANK", "1")
        # rank 1 does not take the lock (rank 0 holds it for the job): it gets past it to the settings check
        assert main(["train-basic", "--out", str(out), *TINY_BASIC, "--set", "no_such_key=1"]) == 2
        assert "in use" not in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
