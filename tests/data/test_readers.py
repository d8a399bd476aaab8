"""RAF-DB, RAF-CE, folder and CSV readers: labels, partitions, skips, errors and the cache."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cfer.data.reading as reading
from cfer.data.folders import read_folder, read_manifest_csv
from cfer.data.rafdb import read_rafce, read_rafdb
from cfer.data.reading import SKIPPED_NAME, ReadOptions
from cfer.data.sources import DataConfig, load_dataset
from cfer.taxonomy import BASIC, COMPOUND, RAFDB_BASIC, RAFDB_COMPOUND

OPTIONS = ReadOptions(size=32, num_workers=2)
FACE = np.random.default_rng(0).integers(0, 256, size=(40, 40, 3), dtype=np.uint8)


def _image(path: Path, pixels: np.ndarray = FACE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def _skipped(directory: Path) -> list[dict[str, str]]:
    with (directory / SKIPPED_NAME).open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


# --- RAF-DB --------------------------------------------------------------------------------------


@pytest.fixture
def rafdb(tmp_path: Path, fake_rafdb) -> Path:
    return fake_rafdb(tmp_path / "RAF-DB", subjects=4, test_subjects=1, original=True)


def test_rafdb_maps_both_label_orders_and_the_official_partition(rafdb: Path) -> None:
    dataset = read_rafdb(rafdb, BASIC + ("neutral",) + COMPOUND, OPTIONS)
    counts = dataset.class_counts()
    assert all(counts[name] == 4 for name in (*RAFDB_BASIC.values(), *RAFDB_COMPOUND.values()))
    assert counts["fearfully_disgusted"] == counts["awed"] == 0  # not in RAF-DB
    assert not dataset.subjects_known and len(set(dataset.subject_ids.tolist())) == len(dataset)
    assert dataset.partition is not None and dataset.partition.bincount().tolist() == [3 * 18, 18]


def test_rafdb_label_numbers_follow_the_dataset_readme(tmp_path: Path) -> None:
    # RAF-DB's README: basic 1 Surprise ... 4 Happiness ... 7 Neutral; compound 1 Happily Surprised ...
    # 11 Disgustedly Surprised. Each image is a flat colour, so its row is known.
    lines = {"basic": ["train_00001.jpg 1", "train_00002.jpg 4", "test_0001.jpg 7"],
             "compound": ["train_0001.jpg 1", "test_0001.jpg 11"]}
    for subset, rows in lines.items():
        (tmp_path / subset / "EmoLabel").mkdir(parents=True)
        (tmp_path / subset / "EmoLabel/list_patition_label.txt").write_text("\n".join(rows))
        for value, row in enumerate(rows):
            stem = row.split(".")[0]
            _image(tmp_path / subset / "Image/aligned" / f"{stem}_aligned.jpg",
                   np.full((8, 8, 3), 40 * value + (0 if subset == "basic" else 20), dtype=np.uint8))
    dataset = read_rafdb(tmp_path, ("neutral", "happy", "surprised", "happily_surprised", "disgustedly_surprised"),
                         ReadOptions(size=8))
    by_colour = {int(image.float().mean().round()): dataset.classes[int(target)]
                 for image, target in zip(dataset.images, dataset.targets)}
    assert by_colour == {0: "surprised", 40: "happy", 80: "neutral", 20: "happily_surprised",
                         60: "disgustedly_surprised"}


def test_rafdb_reads_one_set_and_the_original_variant(rafdb: Path) -> None:
    basic = read_rafdb(rafdb / "basic", BASIC, ReadOptions(size=16))
    assert len(basic) == 24 and basic.image_size == (16, 16)
    assert len(read_rafdb(rafdb, COMPOUND, OPTIONS, variant="original")) == 44
    with pytest.raises(ValueError, match="valid variants are"):
        read_rafdb(rafdb, BASIC, OPTIONS, variant="cropped")


def test_rafdb_missing_root_and_wrong_layout_say_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_rafdb(tmp_path / "absent", BASIC, OPTIONS)
    (tmp_path / "wrong/images").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"expected the layout .*EmoLabel/list_patition_label\.txt"):
        read_rafdb(tmp_path / "wrong", BASIC, OPTIONS)


def test_rafdb_bad_label_lines_are_recorded(rafdb: Path, tmp_path: Path) -> None:
    labels = rafdb / "basic/EmoLabel/list_patition_label.txt"
    lines = labels.read_text().splitlines()
    lines += ["train_09999.jpg 9", "val_00001.jpg 1", "train_08888.jpg 1", lines[0], "garbage"]
    labels.write_text("\n".join(lines) + "\n")
    dataset = read_rafdb(rafdb, BASIC, ReadOptions(size=32, cache_dir=tmp_path / "cache"))
    assert len(dataset) == 24
    reasons = [reason for _, reason in dataset.skipped]
    assert any("unknown basic label 9; valid labels are 1=surprised" in r for r in reasons)
    assert any("no train_/test_ prefix" in r for r in reasons)
    assert any("file is missing" in r for r in reasons)  # train_08888 is listed but absent
    assert any("duplicate entry" in r for r in reasons)
    assert any("expected '<name>.jpg <label>'" in r for r in reasons)
    assert len(_skipped(tmp_path / "cache")) == 5
    with pytest.raises(ValueError, match=r"unknown basic label 9.*on_bad_file=error"):
        read_rafdb(rafdb, BASIC, ReadOptions(size=32, on_bad_file="error"))


def test_damaged_files_are_skipped_and_recorded(rafdb: Path, tmp_path: Path, caplog) -> None:
    images = sorted((rafdb / "basic/Image/aligned").iterdir())
    images[0].write_bytes(b"")
    images[1].write_bytes(images[1].read_bytes()[:100])
    images[2].write_text("this is text")
    dataset = read_rafdb(rafdb, BASIC, ReadOptions(size=32, cache_dir=tmp_path / "cache"))
    assert len(dataset) == 21
    rows = {row["path"]: row["reason"] for row in _skipped(tmp_path / "cache")}
    assert rows[str(images[0])].startswith("empty file")
    assert rows[str(images[1])].startswith("truncated or corrupt")
    assert rows[str(images[2])].startswith("not an image")
    assert "skipped 3 of 24 file(s)" in caplog.text
    with pytest.raises(ValueError, match=rf"{images[0].name}: empty file"):
        read_rafdb(rafdb, BASIC, ReadOptions(size=32, on_bad_file="error"))


# --- RAF-CE --------------------------------------------------------------------------------------


def _rafce(root: Path) -> Path:
    labels = [0, 8, 11, 12, 3, 5]
    partitions = [0, 1, 2, 0, 0, 1]
    aus = ["1+4+25", "L12+R24", "null", "6+12", "4+15", "9+10"]
    for index in range(len(labels)):
        _image(root / "aligned" / f"{index + 1:04d}_aligned.jpg")
    for name, values in (("RAFCE_emolabel.txt", labels), ("RAFCE_partition.txt", partitions),
                         ("RAFCE_AUlabel.txt", aus)):
        (root / name).write_text("\n".join(f"{i + 1:04d}.jpg {v}" for i, v in enumerate(values)))
    return root


def test_rafce_reads_labels_partitions_and_aus(tmp_path: Path) -> None:
    dataset = read_rafce(_rafce(tmp_path / "RAF-CE"), COMPOUND, OPTIONS)
    assert len(dataset) == 5  # class 12 (happily fearful) is outside the taxonomy
    assert "not a CFEE category" in dataset.skipped[0][1]
    names = [dataset.classes[int(t)] for t in dataset.targets]
    assert names == ["happily_surprised", "fearfully_disgusted", "disgustedly_surprised", "sadly_angry",
                     "sadly_disgusted"]
    assert dataset.partition.tolist() == [0, 1, 2, 0, 1]
    assert dataset.au_ids == (1, 4, 6, 9, 10, 12, 15, 24, 25)  # every AU of the AU file
    assert dataset.au_intensities[1].tolist() == [0, 0, 0, 0, 0, 1, 0, 1, 0]  # L12+R24
    assert dataset.au_intensities[2].sum() == 0  # null


# --- folders -------------------------------------------------------------------------------------


def test_folder_names_map_through_aliases_and_partitions(tmp_path: Path) -> None:
    for split in ("train", "test"):
        _image(tmp_path / split / "Happiness" / "a.png")
        _image(tmp_path / split / "happily surprised" / "b.png")
    dataset = read_folder(tmp_path, ("happy", "happily_surprised"), OPTIONS)
    assert dataset.class_counts() == {"happy": 2, "happily_surprised": 2}
    assert sorted(dataset.partition.tolist()) == [0, 0, 1, 1]


def test_unknown_folder_name_lists_the_valid_names(tmp_path: Path) -> None:
    _image(tmp_path / "joyful" / "a.png")
    with pytest.raises(ValueError, match=r"folder .*joyful is not a category: rename it to one of neutral, happy"):
        read_folder(tmp_path, BASIC, OPTIONS)


def test_empty_class_folder_and_non_image_files_are_recorded(tmp_path: Path, fake_folder) -> None:
    fake_folder(tmp_path, ("happy", "sad"), subjects=2)
    (tmp_path / "angry").mkdir()
    (tmp_path / "sad" / "notes.txt").write_text("not a face")
    dataset = read_folder(tmp_path, ("happy", "sad", "angry"), OPTIONS)
    assert dataset.class_counts() == {"happy": 2, "sad": 2, "angry": 0}
    reasons = dict(dataset.skipped)
    assert reasons[str(tmp_path / "angry")] == "empty class folder: no image of angry"
    assert "not an image file name" in reasons[str(tmp_path / "sad" / "notes.txt")]


def test_a_file_name_that_is_not_utf8_is_read_and_recorded_readably(tmp_path: Path) -> None:
    folder = os.fsencode(tmp_path / "happy")
    os.makedirs(folder)
    _image(Path(os.fsdecode(folder + b"/ok\xe9.png")))
    Path(os.fsdecode(folder + b"/bad\xff.png")).write_bytes(b"")
    dataset = read_folder(tmp_path, ("happy",), ReadOptions(size=32, cache_dir=tmp_path / "cache"))
    assert len(dataset) == 1
    assert [row["path"].endswith("bad\\xff.png") for row in _skipped(tmp_path / "cache")] == [True]


# --- CSV manifests -------------------------------------------------------------------------------


def _manifest(tmp_path: Path, rows: list[str], header: str = "path,label,subject,valence,arousal,partition,AU12") -> Path:
    for name in ("a.png", "b.png", "c.png"):
        _image(tmp_path / "faces" / name)
    path = tmp_path / "labels.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_manifest_reads_every_column(tmp_path: Path) -> None:
    path = _manifest(tmp_path, ["faces/a.png,happy,S1,0.8,0.5,train,2.0", "faces/b.png,Sadness,S2,-0.6,,test,",
                                "faces/c.png,happily surprised,S1,,,train,1"])
    dataset = read_manifest_csv(path, ("happy", "sad", "happily_surprised"), OPTIONS)
    assert dataset.subjects_known and dataset.subject_ids.tolist()[0] == dataset.subject_ids.tolist()[2]
    assert dataset.partition.tolist() == [0, 1, 0]
    assert dataset.valence_arousal[0].tolist() == pytest.approx([0.8, 0.5])
    assert torch.isnan(dataset.valence_arousal[1, 1]) and dataset.au_ids == (12,)


def test_manifest_bad_rows_are_recorded(tmp_path: Path) -> None:
    path = _manifest(tmp_path, ["faces/a.png,happy,1,,,,", "faces/a.png,happy,1,,,,", "faces/b.png,joyful,1,,,,",
                                "faces/missing.png,sad,1,,,,", "faces/c.png,sad,1,high,,,"])
    dataset = read_manifest_csv(path, ("happy", "sad"), OPTIONS)
    assert len(dataset) == 1
    reasons = " | ".join(reason for _, reason in dataset.skipped)
    for expected in ("duplicate entry", "unknown label 'joyful'", "file is missing", "valence 'high' is not a number"):
        assert expected in reasons


def test_manifest_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="CSV manifest .*absent.csv does not exist"):
        read_manifest_csv(tmp_path / "absent.csv", BASIC, OPTIONS)
    wrong = _manifest(tmp_path, ["faces/a.png,happy"], header="file,emotion")
    with pytest.raises(ValueError, match=r"must have the columns 'path' and 'label'.*found \['file', 'emotion'\]"):
        read_manifest_csv(wrong, BASIC, OPTIONS)
    wrong.write_bytes("path,label\nfaces/a.png,happy\n".encode() + b"faces/\xe9.png,sad\n")
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        read_manifest_csv(wrong, BASIC, OPTIONS)


def test_subjectless_data_needs_an_explicit_image_split(tmp_path: Path, fake_folder) -> None:
    from cfer.data.splits import assign_splits

    dataset = load_dataset(DataConfig(source="folder", root=str(fake_folder(tmp_path, BASIC, subjects=4)), size=32),
                           BASIC)
    with pytest.raises(ValueError, match="neither subject ids nor an official train/test partition.*data.split=image"):
        assign_splits(dataset, 0, 2, 0.25, 0)
    codes = assign_splits(dataset, 0, 2, 0.25, 0, policy="image")
    assert set(codes.tolist()) == {0, 1, 2}


# --- the cache -----------------------------------------------------------------------------------


def test_cache_is_keyed_by_root_and_file_list(tmp_path: Path, fake_folder, monkeypatch) -> None:
    first = fake_folder(tmp_path / "one", ("happy", "sad"), subjects=2)
    second = tmp_path / "two"
    shutil.copytree(first, second)
    options = ReadOptions(size=32, cache_dir=tmp_path / "cache")
    read_folder(first, ("happy", "sad"), options)
    read_folder(second, ("happy", "sad"), options)
    assert len(list((tmp_path / "cache").glob("folder-*.pt"))) == 2  # one per root

    def no_decoding(*args: object) -> np.ndarray:
        raise AssertionError("decoded although the cache is fresh")

    with monkeypatch.context() as patch:
        patch.setattr(reading, "decode_image", no_decoding)
        assert len(read_folder(first, ("happy", "sad"), options)) == 4
    _image(first / "happy" / "new.png")
    assert len(read_folder(first, ("happy", "sad"), options)) == 5  # a changed folder is decoded again
