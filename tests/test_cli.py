"""The ``cfer`` command line: help, the synth export, and clear errors for bad arguments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cfer.cli import build_parser, main
from cfer.data.cfee import read_cfee, read_manifest
from cfer.data.synthetic import SyntheticConfig, SyntheticFaces

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def subcommands() -> list[str]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return sorted(action.choices)


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in subcommands():
        assert name in text


@pytest.mark.parametrize("command", subcommands())
def test_each_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "--config" in capsys.readouterr().out


def test_synth_export_round_trips_through_the_cfee_reader(tmp_path, capsys):
    out = tmp_path / "cfee"
    status = main(["synth", "--out", str(out), "--subjects", "2", "--size", "32", "--seed", "3",
                   "--set", "categories=[happy, awed, neutral]"])
    assert status == 0
    assert "wrote 6 images" in capsys.readouterr().out
    read = read_cfee(out)
    expected = SyntheticFaces(SyntheticConfig(subjects=2, size=32, seed=3, categories=("happy", "awed", "neutral")))
    # The reader orders by CFEE id then subject; compare as sets of (class, subject, pixels).
    def rows(dataset):
        return sorted((dataset.classes[int(t)], int(s), dataset.images[i].numpy().tobytes())
                      for i, (t, s) in enumerate(zip(dataset.targets, dataset.subject_ids)))
    assert rows(read) == rows(expected)
    manifest = read_manifest(out)
    assert len(manifest) == 6
    assert {"category", "subject_id", "valence", "arousal", "AU12"} <= set(manifest[0])
    assert (out / "01-04").is_dir()


def test_contact_sheet_is_written(tmp_path):
    sheet = tmp_path / "sheet.png"
    assert main(["synth", "--contact-sheet", str(sheet), "--sheet-subjects", "2", "--size", "32",
                 "--set", "categories=[happy, sadly_angry]"]) == 0
    from PIL import Image

    with Image.open(sheet) as image:
        assert image.size[0] > 100 and np.asarray(image).std() > 0


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["synth", "--out", "x", "--set", "sizee=32"], "valid keys"),
        (["synth", "--out", "x", "--set", "subjects=many"], "subjects"),
        (["synth"], "nothing to do"),
        (["synth", "--out", "x", "--config", "missing.yaml"], "missing.yaml"),
        (["synth", "--out", "x", "--set", "categories=[happy, joyful]"], "joyful"),
    ],
)
def test_bad_arguments_give_a_clear_error(arguments, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert message in error
    assert "Traceback" not in error


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "cfer.cli", "synth", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--contact-sheet" in result.stdout


def test_shipped_synth_config_loads():
    from cfer.config import load_config

    config = load_config(SyntheticConfig, CONFIGS / "synth.yaml")
    assert config.subjects == 230 and config.size == 64


def test_gradcam_command_on_a_tiny_checkpoint(tmp_path, capsys):
    import torch

    from cfer.config import save_config
    from cfer.data.sources import DataConfig
    from cfer.models import ModelConfig, create_model, save_checkpoint
    from cfer.taxonomy import BASIC
    from cfer.training.basic import BasicPhaseConfig

    model_config = ModelConfig(backbone="mobilenetv3_small_050", pretrained="none")
    run = tmp_path / "run"
    torch.manual_seed(0)
    save_config(BasicPhaseConfig(data=DataConfig(size=32, subjects=4), model=model_config), run / "config.yaml")
    save_checkpoint(create_model(model_config, len(BASIC)), run / "model.safetensors", {"classes": list(BASIC)})
    out = tmp_path / "cam"
    assert main(["gradcam", "--run", str(run), "--out", str(out), "--subjects", "1", "--no-probe",
                 "--method", "gradcam++", "--set", "panel_subjects=0"]) == 0
    assert (out / "gradcam.json").is_file() and (out / "subject_grid.png").is_file()
    assert "pointing" in capsys.readouterr().out.lower()


def test_gradcam_command_names_a_missing_run(tmp_path, capsys):
    assert main(["gradcam", "--run", str(tmp_path / "nothing"), "--out", str(tmp_path / "cam")]) == 2
    assert "nothing" in capsys.readouterr().err
