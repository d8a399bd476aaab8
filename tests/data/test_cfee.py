"""Tests of cfer.data.cfee: reading and writing the CFEE_Database_230 layout."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cfer.data.reading as reading
from cfer.data.cfee import read_cfee, read_manifest, read_prefix_map, write_cfee
from cfer.data.dataset import FaceExpressionDataset
from cfer.taxonomy import CATEGORY_NAMES

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def save_image(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (6, 6)) -> Path:
    """Writes a solid-colour image; PNG is lossless, JPEG is not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


@pytest.fixture
def cfee_root(tmp_path: Path) -> Path:
    """A tiny CFEE_Database_230 tree: 3 subjects, categories 1 (neutral), 2 (happy), 8."""
    root = tmp_path / "CFEE_Database_230"
    save_image(root / "01-04/Images1/01_126_3963.png", RED)
    save_image(root / "01-04/Images1/02_126_3964.png", GREEN)
    save_image(root / "01-04/Images1/02_140_0001.png", BLUE)
    save_image(root / "05-08/Images2/08_339_3470.png", (10, 20, 30))
    save_image(root / "01-04/Images1/01_339_0005.png", (40, 50, 60))
    (root / "01-04/Images1/.DS_Store").write_bytes(b"junk")
    (root / "01-04/Images1/notes.txt").write_text("not an image")
    return root


def test_read_parses_emotion_and_subject_from_file_names(cfee_root: Path) -> None:
    dataset = read_cfee(cfee_root)
    assert dataset.classes == CATEGORY_NAMES
    names = [dataset.classes[t] for t in dataset.targets.tolist()]
    # Sorted by (prefix, subject, serial).
    assert names == ["neutral", "neutral", "happy", "happy", "happily_surprised"]
    assert dataset.subject_ids.tolist() == [126, 339, 126, 140, 339]
    assert dataset.images.shape == (5, 3, 6, 6) and dataset.images.dtype == torch.uint8
    expected = [RED, (40, 50, 60), GREEN, BLUE, (10, 20, 30)]
    assert [tuple(image[:, 0, 0].tolist()) for image in dataset.images] == expected
    assert dataset.au_intensities is None and dataset.valence_arousal is None


def test_read_center_crops_then_resizes(tmp_path: Path) -> None:
    # 12 wide, 4 high: red | green | blue in thirds. The centred 4x4 square is green.
    image = np.zeros((4, 12, 3), dtype=np.uint8)
    image[:, :4] = RED
    image[:, 4:8] = GREEN
    image[:, 8:] = BLUE
    path = tmp_path / "root/01-04/Images1/02_200_0001.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(image).save(path)
    dataset = read_cfee(tmp_path / "root", size=2)
    assert dataset.images.shape == (1, 3, 2, 2)
    assert (dataset.images[0].permute(1, 2, 0) == torch.tensor(GREEN, dtype=torch.uint8)).all()


def test_read_resizes_jpeg_with_draft_decoding(tmp_path: Path) -> None:
    root = tmp_path / "root"
    save_image(root / "01-04/Images1/03_200_0001.JPG", (200, 40, 40), size=(64, 48))
    dataset = read_cfee(root, size=8)
    assert dataset.images.shape == (1, 3, 8, 8)
    assert dataset.classes[int(dataset.targets[0])] == "sad"
    # JPEG is lossy: compare the mean colour loosely.
    mean = dataset.images.float().mean(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.tensor([200.0, 40.0, 40.0]), atol=6)


def test_read_keeps_only_requested_categories_in_cfee_id_order(cfee_root: Path) -> None:
    dataset = read_cfee(cfee_root, categories=["Happily Surprised", "neutral"])
    assert dataset.classes == ("neutral", "happily_surprised")
    assert dataset.targets.tolist() == [0, 0, 1]
    with pytest.raises(KeyError, match="unknown category 'joyful'"):
        read_cfee(cfee_root, categories=["joyful"])


def test_read_with_a_prefix_map_from_the_summary_sheet(cfee_root: Path, tmp_path: Path) -> None:
    save_image(cfee_root / "21-26/Images6/23_126_0009.png", RED)
    with pytest.raises(ValueError, match=r"unknown emotion prefix 23 in .*23_126_0009\.png"):
        read_cfee(cfee_root)
    sheet = tmp_path / "summary.csv"
    sheet.write_text("ID,Emotion\n1,Neutral\n2,Happy\n23,Happily surprised\n")
    prefix_map = read_prefix_map(sheet)
    assert prefix_map == {1: "neutral", 2: "happy", 23: "happily_surprised"}
    dataset = read_cfee(cfee_root, prefix_map=prefix_map, skip_invalid=True)
    names = [dataset.classes[t] for t in dataset.targets.tolist()]
    # Prefix 08 is not in the map and is skipped; prefix 23 is happily_surprised.
    assert dataset.classes == ("neutral", "happy", "happily_surprised")
    assert names == ["neutral", "neutral", "happy", "happy", "happily_surprised"]
    assert dataset.subject_ids.tolist()[-1] == 126


def test_missing_root_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"CFEE root .*absent does not exist"):
        read_cfee(tmp_path / "absent")


def test_wrong_layout_says_what_was_expected_and_where_images_are(tmp_path: Path) -> None:
    save_image(tmp_path / "flat" / "01_126_3963.png", RED)
    with pytest.raises(FileNotFoundError, match=r"Images<k>.*elsewhere, e\.g\. '01_126_3963\.png'"):
        read_cfee(tmp_path / "flat")


def test_unparseable_file_name_is_named_unless_skipped(cfee_root: Path, caplog) -> None:
    save_image(cfee_root / "21-26/Images6/260_19.png.jpg", RED)
    with pytest.raises(ValueError, match=r"cannot parse CFEE file name .*260_19\.png\.jpg"):
        read_cfee(cfee_root)
    with caplog.at_level(logging.WARNING, logger="cfer.data.cfee"):
        dataset = read_cfee(cfee_root, skip_invalid=True)
    assert len(dataset) == 5
    assert "260_19.png.jpg" in caplog.text


def test_corrupt_image_is_skipped_and_recorded_or_named_as_an_error(cfee_root: Path, tmp_path: Path) -> None:
    broken = cfee_root / "01-04/Images1/03_126_0001.jpg"
    broken.write_bytes(b"\xff\xd8 this is not a jpeg")
    dataset = read_cfee(cfee_root, size=4, cache=tmp_path / "cache" / "cfee.pt")
    assert len(dataset) == 5 and [path for path, _ in dataset.skipped] == [str(broken)]
    assert str(broken) in (tmp_path / "cache" / "skipped.csv").read_text()
    with pytest.raises(ValueError, match=r"03_126_0001\.jpg: .*on_bad_file=error"):
        read_cfee(cfee_root, size=4, on_bad_file="error")


def test_different_image_sizes_need_a_size(cfee_root: Path) -> None:
    save_image(cfee_root / "01-04/Images1/03_126_0001.png", RED, size=(8, 6))
    dataset = read_cfee(cfee_root)
    assert len(dataset) == 5 and "set data.size" in dataset.skipped[0][1]
    assert read_cfee(cfee_root, size=3).images.shape == (6, 3, 3, 3)


def test_detectface_crops_of_the_reference_code_parse(tmp_path: Path) -> None:
    save_image(tmp_path / "r/01-04/Images1/04_211_0042_detectface.jpg", RED)
    dataset = read_cfee(tmp_path / "r")
    assert dataset.classes[int(dataset.targets[0])] == "fearful"
    assert dataset.subject_ids.tolist() == [211]


def make_dataset(n_samples: int = 9) -> FaceExpressionDataset:
    generator = torch.Generator().manual_seed(1)
    classes = ("angry", "happy", "awed")
    return FaceExpressionDataset(
        images=torch.randint(0, 256, (n_samples, 3, 5, 4), dtype=torch.uint8, generator=generator),
        targets=torch.tensor([2, 0, 1, 1, 0, 2, 0, 1, 2][:n_samples]),
        classes=classes,
        subject_ids=torch.tensor([7, 3, 3, 7, 12, 3, 7, 12, 12][:n_samples]),
        au_intensities=torch.rand(n_samples, 3, generator=generator) * 5,
        au_ids=(1, 4, 25),
        valence_arousal=torch.rand(n_samples, 2, generator=generator) * 2 - 1,
    )


def test_write_then_read_round_trips_pixels_and_every_target(tmp_path: Path) -> None:
    original = make_dataset()
    root = write_cfee(original, tmp_path / "export")
    loaded = read_cfee(root, categories=original.classes)

    # read_cfee orders by (CFEE id, subject, sample index); reorder the original alike.
    ids = {"angry": 5, "happy": 2, "awed": 22}
    order = sorted(
        range(len(original)),
        key=lambda i: (ids[original.classes[original.targets[i]]], int(original.subject_ids[i]), i),
    )
    expected = original.subset(order)
    assert loaded.classes == ("happy", "angry", "awed")  # CFEE id order
    assert [loaded.classes[t] for t in loaded.targets.tolist()] == [
        expected.classes[t] for t in expected.targets.tolist()
    ]
    assert torch.equal(loaded.images, expected.images)
    assert torch.equal(loaded.subject_ids, expected.subject_ids)
    assert loaded.au_ids == (1, 4, 25)
    assert torch.equal(loaded.au_intensities, expected.au_intensities)
    assert torch.equal(loaded.valence_arousal, expected.valence_arousal)


def test_write_uses_the_cfee_layout_and_names(tmp_path: Path) -> None:
    root = write_cfee(make_dataset(), tmp_path / "export")
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    assert "21-26/Images6/22_007_0000.png" in names  # sample 0: awed (id 22), subject 7
    assert "05-08/Images2/05_003_0001.png" in names  # sample 1: angry (id 5), subject 3
    assert "01-04/Images1/02_003_0002.png" in names  # sample 2: happy (id 2), subject 3
    assert "21-26/Images6/22_012_0008.png" in names
    assert len(names) == 9


def test_manifest_lists_every_target_per_image(tmp_path: Path) -> None:
    dataset = make_dataset()
    root = write_cfee(dataset, tmp_path / "export")
    rows = read_manifest(root)
    assert len(rows) == 9
    header = (root / "manifest.csv").read_text().splitlines()[0]
    assert header == "path,category,cfee_id,subject_id,valence,arousal,AU01,AU04,AU25"
    row = next(r for r in rows if r["path"].endswith("_0004.png"))
    assert (row["category"], row["cfee_id"], row["subject_id"]) == ("angry", 5, 12)
    assert row["valence"] == pytest.approx(float(dataset.valence_arousal[4, 0]))
    assert row["AU25"] == pytest.approx(float(dataset.au_intensities[4, 2]))
    assert (root / row["path"]).is_file()


def test_manifest_without_optional_targets_and_missing_manifest(tmp_path: Path) -> None:
    plain = FaceExpressionDataset(
        torch.zeros(2, 3, 2, 2, dtype=torch.uint8), torch.tensor([0, 1]), ("sad", "hatred"),
        torch.tensor([1, 2]),
    )
    root = write_cfee(plain, tmp_path / "plain")
    rows = read_manifest(root)
    assert rows[0]["valence"] is None and "AU01" not in rows[0]
    loaded = read_cfee(root)
    assert loaded.valence_arousal is None and loaded.au_intensities is None
    with pytest.raises(FileNotFoundError, match="manifest"):
        read_manifest(tmp_path)
    assert write_cfee(plain, tmp_path / "bare", manifest=False).joinpath("manifest.csv").exists() is False


def test_manifest_that_disagrees_with_files_is_an_error(tmp_path: Path) -> None:
    root = write_cfee(make_dataset(), tmp_path / "export")
    manifest = root / "manifest.csv"
    manifest.write_text(manifest.read_text().replace(",angry,5,12,", ",angry,5,13,", 1))
    with pytest.raises(ValueError, match="manifest.csv row for .* says"):
        read_cfee(root)
    assert len(read_cfee(root, use_manifest=False)) == 9


def test_write_resumes_by_skipping_existing_files(tmp_path: Path) -> None:
    dataset = make_dataset()
    root = write_cfee(dataset, tmp_path / "export")
    files = sorted(root.rglob("*.png"))
    files[0].unlink()
    # An existing file with the right name is kept as is, even if its content differs.
    files[1].write_bytes(b"placeholder")
    write_cfee(dataset, root)
    assert files[0].is_file()
    assert files[1].read_bytes() == b"placeholder"
    assert len(list(root.rglob("*.png"))) == 9


def test_interrupted_write_leaves_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    def failing_replace(source: str, destination: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(reading.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_cfee(make_dataset(), tmp_path / "export", num_workers=1)
    leftovers = [p for p in (tmp_path / "export").rglob("*") if p.is_file()]
    assert leftovers == []


def test_write_rejects_non_cfee_classes_and_negative_subjects(tmp_path: Path) -> None:
    images = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    odd = FaceExpressionDataset(images, torch.tensor([0]), ("contempt",), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"\['contempt'\] have no CFEE file prefix"):
        write_cfee(odd, tmp_path / "x")
    negative = FaceExpressionDataset(images, torch.tensor([0]), ("sad",), torch.tensor([-1]))
    with pytest.raises(ValueError, match="non-negative"):
        write_cfee(negative, tmp_path / "y")


def test_cache_is_used_when_fresh_and_rebuilt_when_files_change(
    cfee_root: Path, tmp_path: Path, monkeypatch
) -> None:
    cache = tmp_path / "cache" / "cfee.pt"
    first = read_cfee(cfee_root, size=4, cache=cache)
    assert cache.is_file()

    def no_decoding(path: Path, size: int | None, max_pixels: int) -> np.ndarray:
        raise AssertionError(f"decoded {path} although the cache is fresh")

    with monkeypatch.context() as patch:
        patch.setattr(reading, "decode_image", no_decoding)
        cached = read_cfee(cfee_root, size=4, cache=cache)
        assert torch.equal(cached.images, first.images)
        assert torch.equal(cached.targets, first.targets)
        # Other arguments, other dataset: the cache must not be reused.
        with pytest.raises(AssertionError, match="decoded"):
            read_cfee(cfee_root, size=3, cache=cache)

    save_image(cfee_root / "01-04/Images1/03_126_0001.png", RED)
    rebuilt = read_cfee(cfee_root, size=4, cache=cache)
    assert len(rebuilt) == 6
    assert len(FaceExpressionDataset.load(cache)) == 6
