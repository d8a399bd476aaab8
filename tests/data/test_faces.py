"""MTCNN on real photos (scikit-image's astronaut and LFW subset), eye-line alignment, cfer preprocess."""

from __future__ import annotations

import csv
import importlib.metadata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

skimage_data = pytest.importorskip("skimage.data")

from cfer.data.faces import (  # noqa: E402
    MTCNN,
    PreprocessConfig,
    align_face,
    eye_angle,
    load_mtcnn_weights,
    preprocess_images,
)
from cfer.data.folders import read_folder, read_manifest_csv  # noqa: E402
from cfer.data.reading import ReadOptions  # noqa: E402


@pytest.fixture(scope="module")
def detector() -> MTCNN:
    return MTCNN()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


def _rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    # counter-clockwise on screen, about the centre, the border filled with the edge colours
    return np.asarray(Image.fromarray(image).rotate(degrees, resample=Image.Resampling.BILINEAR))


def test_the_astronaut_has_one_face_with_landmarks_in_place(detector: MTCNN, astronaut: np.ndarray) -> None:
    found = detector.detect(astronaut)
    assert len(found) == 1 and found.probabilities[0] > 0.99
    x1, y1, x2, y2 = found.boxes[0]
    (left_eye, right_eye, nose, left_mouth, right_mouth) = found.landmarks[0]
    for x, y in found.landmarks[0]:
        assert x1 <= x <= x2 and y1 <= y <= y2
    assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])


@pytest.mark.parametrize("degrees", [-15.0, 15.0])
def test_rotation_shows_in_the_eye_line_and_alignment_levels_it(detector: MTCNN, astronaut: np.ndarray,
                                                                degrees: float) -> None:
    upright = eye_angle(detector.detect(astronaut).landmarks[0])
    tilted = _rotated(astronaut, degrees)
    landmarks = detector.detect(tilted).landmarks[0]
    # PIL rotates counter-clockwise on screen, which lowers the right end of the line: angle - degrees
    assert eye_angle(landmarks) == pytest.approx(upright - degrees, abs=4.0)
    aligned = align_face(tilted, landmarks, size=160)
    again = detector.detect(aligned)
    assert aligned.shape == (160, 160, 3) and len(again) == 1
    assert abs(eye_angle(again.landmarks[0])) < 3.0


def test_lfw_faces_are_found_and_non_faces_are_not(detector: MTCNN) -> None:
    crops = (skimage_data.lfw_subset() * 255).astype(np.uint8)  # 100 faces, then 100 non-faces, 25 x 25
    found = [len(detector.detect(crop)) > 0 for crop in crops]
    assert sum(found[:100]) >= 90
    assert sum(found[100:]) <= 5


def test_no_face_in_a_cup_of_coffee(detector: MTCNN) -> None:
    assert len(detector.detect(skimage_data.coffee())) == 0


def test_missing_weights_package_is_a_clear_error(monkeypatch) -> None:
    def absent(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    with pytest.raises(FileNotFoundError, match=r"pip install 'mtcnn>=1.0,<2'"):
        load_mtcnn_weights()


def _photos(root: Path, astronaut: np.ndarray) -> Path:
    (root / "happy").mkdir(parents=True)
    (root / "sad").mkdir()
    Image.fromarray(astronaut).save(root / "happy" / "astronaut.jpg")
    Image.fromarray(_rotated(astronaut, 20)).save(root / "sad" / "tilted.png")
    Image.fromarray(np.concatenate([astronaut, astronaut], axis=1)).save(root / "sad" / "twins.jpg")
    Image.fromarray(skimage_data.coffee()).save(root / "happy" / "coffee.jpg")
    (root / "sad" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    return root


def _report(out: Path) -> dict[str, dict[str, str]]:
    with (out / "report.csv").open(newline="") as file:
        return {Path(row["input"]).name: row for row in csv.DictReader(file)}


def test_preprocess_writes_aligned_faces_and_reports_every_photo(tmp_path: Path, detector: MTCNN,
                                                                  astronaut: np.ndarray) -> None:
    photos = _photos(tmp_path / "in", astronaut)
    config = PreprocessConfig(size=64, progress=False)
    summary = preprocess_images(photos, tmp_path / "out", config, detector=detector)
    report = _report(tmp_path / "out")
    assert {name: row["status"] for name, row in report.items()} == {
        "astronaut.jpg": "ok", "coffee.jpg": "no face", "tilted.png": "ok", "twins.jpg": "several faces",
        "broken.jpg": "bad file"}
    assert report["twins.jpg"]["faces"] == "2" and "most probable of 2" in report["twins.jpg"]["detail"]
    assert summary["counts"] == {"ok": 2, "no face": 1, "bad file": 1, "several faces": 1}
    dataset = read_folder(tmp_path / "out", ("happy", "sad"), ReadOptions(size=64))
    assert dataset.class_counts() == {"happy": 1, "sad": 2}
    tilted = np.asarray(Image.open(tmp_path / "out" / "sad" / "tilted.png"))
    assert abs(eye_angle(detector.detect(tilted).landmarks[0])) < 3.0
    # a second run keeps what is written, and finds nothing new to do
    again = preprocess_images(photos, tmp_path / "out", config, detector=detector)
    assert again["counts"]["kept"] == 3


def test_preprocess_manifest_layout_reads_back_and_bad_files_can_stop_it(tmp_path: Path, detector: MTCNN,
                                                                         astronaut: np.ndarray) -> None:
    photos = _photos(tmp_path / "in", astronaut)
    preprocess_images(photos, tmp_path / "out", PreprocessConfig(size=48, layout="manifest", progress=False,
                                                                 no_face="center"), detector=detector)
    dataset = read_manifest_csv(tmp_path / "out" / "manifest.csv", ("happy", "sad"), ReadOptions(size=48))
    assert dataset.class_counts() == {"happy": 2, "sad": 2}  # the coffee cup kept as a center crop
    with pytest.raises(ValueError, match=r"broken\.jpg: .*on_bad_file=error"):
        preprocess_images(photos, tmp_path / "strict", PreprocessConfig(on_bad_file="error", progress=False),
                          detector=detector)
