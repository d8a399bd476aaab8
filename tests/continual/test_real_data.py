"""The commands on real-data layouts: RAF-DB basic -> compound, folders, CSV manifests, two sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cfer.cli import main
from cfer.taxonomy import RAFDB_COMPOUND

TINY = ["--size", "32", "--backbone", "test_efficientnet", "--set", "basic.model.pretrained=none",
        "--set", "basic.head_epochs=1", "--set", "basic.finetune_epochs=1", "--set", "epochs=1",
        "--set", "confusion_plots=none", "--set", "basic.val_fraction=0.25"]
TINY_BASIC = ["--size", "32", "--backbone", "test_efficientnet", "--set", "model.pretrained=none",
              "--set", "head_epochs=1", "--set", "finetune_epochs=1", "--set", "val_fraction=0.25"]


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def test_train_basic_on_rafdb_uses_the_official_split(tmp_path: Path, fake_rafdb) -> None:
    root = fake_rafdb(tmp_path / "RAF-DB", subjects=6, test_subjects=2)
    assert main(["train-basic", "--dataset", "rafdb", "--root", str(root), "--out", str(tmp_path / "run"),
                 *TINY_BASIC]) == 0
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [fold["fold"] for fold in summary["folds"]] == [0]  # one official split, not 10 folds
    test = summary["best_fold_test"]
    assert sum(row["support"] for row in test["per_class"].values()) == 6 * 2  # the test_ images of 6 classes


def test_train_incremental_rafdb_basic_then_compound(tmp_path: Path, fake_rafdb) -> None:
    root = fake_rafdb(tmp_path / "RAF-DB", subjects=6, test_subjects=2)
    broken = sorted((root / "compound/Image/aligned").glob("train_*"))[0]
    broken.write_bytes(broken.read_bytes()[:50])
    out = tmp_path / "run"
    assert main(["train-incremental", "--dataset", "rafdb", "--root", str(root), "--out", str(out), *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    run = results["strategies"]["cfer"]["runs"][0]
    assert len(run["steps"]) == 1 + len(RAFDB_COMPOUND)  # the 11 compounds RAF-DB has
    assert sorted(run["order"]) == sorted(RAFDB_COMPOUND.values())
    assert broken.name in (out / "skipped.csv").read_text()


def test_a_folder_without_subjects_needs_an_explicit_image_split(tmp_path: Path, fake_folder, capsys) -> None:
    from cfer.taxonomy import BASIC

    root = fake_folder(tmp_path / "faces", BASIC, subjects=4)
    arguments = ["train-basic", "--dataset", "folder", "--root", str(root), "--out", str(tmp_path / "run"),
                 *TINY_BASIC, "--set", "folds=2"]
    assert main(arguments) == 2
    assert "--set data.split=image" in capsys.readouterr().err
    assert main([*arguments, "--set", "data.split=image"]) == 0


def test_basic_from_rafdb_and_compounds_from_a_csv_manifest(tmp_path: Path, fake_rafdb, fake_folder) -> None:
    root = fake_rafdb(tmp_path / "RAF-DB", subjects=6, test_subjects=2)
    compounds = ("happily_surprised", "sadly_angry", "awed")
    faces = fake_folder(tmp_path / "mine", compounds, subjects=6)
    rows = ["path,label,partition"]
    for folder in sorted(faces.iterdir()):
        for rank, path in enumerate(sorted(folder.glob("*.png"))):  # two test images per class
            rows.append(f"{folder.name}/{path.name},{folder.name},{'test' if rank < 2 else 'train'}")
    (faces / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert main(["train-incremental", "--dataset", "rafdb", "--root", str(root / "basic"), "--out", str(out),
                 *TINY, "--set", "compound_data.source=csv", "--set", f"compound_data.root={faces / 'labels.csv'}",
                 "--set", "compound_data.size=32"]) == 0
    run = json.loads((out / "results.json").read_text())["strategies"]["cfer"]["runs"][0]
    assert sorted(run["order"]) == sorted(compounds)
