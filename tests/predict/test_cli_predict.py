"""`cfer predict` and `cfer export` end to end: the CSV/JSON schema, video, Grad-CAM, annotation, bad files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cfer.cli import main
from cfer.predict import CSV_COLUMNS

from .conftest import CLASSES, SIZE, VIDEO_FRAMES, write_clip

pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = ["--set", "progress=false"]


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "predictions.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def _skipped(out: Path) -> dict[str, str]:
    with open(out / "skipped.csv", newline="", encoding="utf-8") as file:
        return {Path(row["path"]).name: row["reason"] for row in csv.DictReader(file)}


@pytest.fixture(scope="module")
def mixed_inputs(tmp_path_factory, astronaut_file, clip) -> dict[str, Path]:
    """A photo, a folder holding the photo again and bad files, a video, a missing path and a text file."""
    root = tmp_path_factory.mktemp("inputs")
    folder = root / "folder"
    (folder / "nested").mkdir(parents=True)
    (folder / "nested" / "again.png").write_bytes(astronaut_file.read_bytes())
    (folder / "corrupt.jpg").write_bytes(astronaut_file.read_bytes()[:300])  # a PNG cut short, named .jpg
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "garbage.avi").write_bytes(b"this is not a video at all" * 10)
    (folder / "readme.md").write_text("ignored: neither an image nor a video")
    notes = root / "notes.txt"
    notes.write_text("named explicitly: recorded as skipped")
    return {"photo": astronaut_file, "folder": folder, "video": clip, "missing": root / "missing.png", "notes": notes}


@pytest.fixture(scope="module")
def predicted(tmp_path_factory, multitask_checkpoint, mixed_inputs) -> tuple[Path, int]:
    out = tmp_path_factory.mktemp("predicted")
    arguments = [str(path) for path in mixed_inputs.values()]
    status = main(["predict", "--model", str(multitask_checkpoint), *arguments, "--out", str(out), *QUIET])
    return out, status


def test_predict_writes_one_row_per_face_and_frame(predicted, mixed_inputs) -> None:
    out, status = predicted
    assert status == 0
    rows = _rows(out)
    header = list(rows[0])
    assert header == [*CSV_COLUMNS, *(f"p_{name}" for name in CLASSES)]
    by_source = {}
    for row in rows:
        by_source.setdefault(Path(row["source"]).name, []).append(row)
    assert sorted(by_source) == ["again.png", "astronaut.png", "clip.mp4"]
    assert [row["frame"] for row in by_source["astronaut.png"]] == [""]
    assert [int(row["frame"]) for row in by_source["clip.mp4"]] == list(range(VIDEO_FRAMES))
    assert {row["track"] for row in by_source["clip.mp4"]} == {"0"}
    for row in rows:
        probabilities = {name: float(row[f"p_{name}"]) for name in CLASSES}
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert row["label"] == max(probabilities, key=probabilities.get)
        assert row["top_k"].split(";")[0].split(":")[0] == row["label"]
        assert -1 <= float(row["valence"]) <= 1 and -1 <= float(row["arousal"]) <= 1
        assert float(row["x1"]) < float(row["x2"]) and float(row["y1"]) < float(row["y2"])


def test_the_json_holds_the_same_rows_as_the_csv(predicted) -> None:
    out, _ = predicted
    report = json.loads((out / "predictions.json").read_text())
    rows = _rows(out)
    assert len(report["faces"]) == len(rows)
    for face, row in zip(report["faces"], rows):
        assert face["label"] == row["label"] and face["source"] == row["source"]
        assert face["probabilities"][row["label"]] == pytest.approx(float(row["probability"]), abs=1e-6)
        assert [item["class"] for item in face["top_k"]] == [item.split(":")[0] for item in row["top_k"].split(";")]
        assert face["box"] == pytest.approx([float(row[key]) for key in ("x1", "y1", "x2", "y2")], abs=0.06)
    assert report["model"]["spec"]["class_names"] == list(CLASSES)
    assert {item["kind"] for item in report["inputs"]} == {"image", "video"}


def test_bad_inputs_are_recorded_skips(predicted) -> None:
    out, _ = predicted
    skipped = _skipped(out)
    assert set(skipped) == {"missing.png", "notes.txt", "corrupt.jpg", "empty.mp4", "garbage.avi"}
    assert "missing" in skipped["missing.png"]
    assert "neither an image" in skipped["notes.txt"]
    assert "truncated" in skipped["corrupt.jpg"] or "corrupt" in skipped["corrupt.jpg"]
    assert "empty" in skipped["empty.mp4"]
    assert "OpenCV" in skipped["garbage.avi"]
    report = json.loads((out / "predictions.json").read_text())
    assert {Path(item["path"]).name for item in report["skipped"]} == set(skipped)


def test_the_printed_table_is_readable(multitask_checkpoint, astronaut_file, tmp_path, capsys) -> None:
    assert main(["predict", "--model", str(multitask_checkpoint), str(astronaut_file), "--out", str(tmp_path),
                 "--top-k", "2", *QUIET]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["input", "face", "box"] and set(lines[1]) <= {"-", " "}
    row = _rows(tmp_path)[0]
    assert lines[2].startswith("astronaut.png") and row["top_k"].split(";")[0].split(":")[0] in lines[2]
    assert any(line.startswith("csv: ") for line in lines)


def test_grad_cam_overlays_one_per_face(multitask_checkpoint, astronaut_file, tmp_path) -> None:
    assert main(["predict", "--model", str(multitask_checkpoint), str(astronaut_file), "--out", str(tmp_path),
                 "--cam", "gradcam", *QUIET]) == 0
    rows = _rows(tmp_path)
    overlays = sorted((tmp_path / "cam").glob("*.png"))
    assert [Path(row["cam"]).name for row in rows] == [path.name for path in overlays] == ["astronaut_face0.png"]
    assert cv2.imread(str(overlays[0])).shape == (192, 192, 3)


def test_annotate_writes_the_video_with_its_faces(multitask_checkpoint, clip, tmp_path) -> None:
    annotated = tmp_path / "annotated.mp4"
    assert main(["predict", "--model", str(multitask_checkpoint), str(clip), "--out", str(tmp_path / "out"),
                 "--annotate", str(annotated), "--detect-every", "3", *QUIET]) == 0
    reader, original = cv2.VideoCapture(str(annotated)), cv2.VideoCapture(str(clip))
    frames = changed = 0
    while True:
        ok, frame = reader.read()
        ok_original, source = original.read()
        if not ok:
            break
        frames += 1
        changed += int(ok_original and cv2.absdiff(frame, source).max() > 100)  # the drawn box and label
    assert frames == VIDEO_FRAMES and changed == VIDEO_FRAMES
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []  # no temporary left


def test_a_cut_video_is_predicted_up_to_where_it_breaks(multitask_checkpoint, astronaut, tmp_path) -> None:
    whole = write_clip(tmp_path / "whole.avi", astronaut, frames=30)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    assert main(["predict", "--model", str(multitask_checkpoint), str(cut), "--out", str(tmp_path / "out"),
                 "--stride", "2", *QUIET]) == 0
    rows = _rows(tmp_path / "out")
    assert 0 < len(rows) < 15 and all(int(row["frame"]) % 2 == 0 for row in rows)
    assert "declares" in _skipped(tmp_path / "out")["cut.avi"]


def test_on_bad_file_error_stops_at_the_first_bad_file(multitask_checkpoint, mixed_inputs, tmp_path, capsys) -> None:
    status = main(["predict", "--model", str(multitask_checkpoint), str(mixed_inputs["photo"]),
                   str(mixed_inputs["missing"]), "--out", str(tmp_path), "--set", "on_bad_file=error", *QUIET])
    assert status == 2
    assert "missing.png" in capsys.readouterr().err


def test_no_readable_input_is_an_error(multitask_checkpoint, mixed_inputs, tmp_path, capsys) -> None:
    status = main(["predict", "--model", str(multitask_checkpoint), str(mixed_inputs["missing"]),
                   str(mixed_inputs["notes"]), "--out", str(tmp_path), *QUIET])
    assert status == 2
    error = capsys.readouterr().err
    assert "no input could be read" in error and "missing.png" in error


def test_a_wrong_model_path_is_an_error_not_a_traceback(astronaut_file, tmp_path, capsys) -> None:
    assert main(["predict", "--model", str(tmp_path / "runs" / "nothing"), str(astronaut_file), *QUIET]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path), str(astronaut_file), *QUIET]) == 2
    assert "looked for model.safetensors" in capsys.readouterr().err


def test_annotate_needs_one_video(multitask_checkpoint, astronaut_file, tmp_path, capsys) -> None:
    assert main(["predict", "--model", str(multitask_checkpoint), str(astronaut_file), "--out", str(tmp_path),
                 "--annotate", str(tmp_path / "a.mp4"), *QUIET]) == 2
    assert "one video" in capsys.readouterr().err
    assert main(["predict", "--model", str(multitask_checkpoint), str(astronaut_file), "--out", str(tmp_path),
                 "--annotate", str(tmp_path / "a.gif"), *QUIET]) == 2
    assert "unsupported video suffix" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_export_writes_a_checked_file_with_its_contract(incremental_run, tmp_path, capsys) -> None:
    # TorchScript here, the faster export; tests/predict/test_export.py covers both formats
    out = tmp_path / "model.pt"
    assert main(["export", "--model", str(incremental_run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "checked against PyTorch" in printed
    difference = float(printed.rsplit("max |output difference| ", 1)[1].split()[0])
    assert difference <= 1e-4
    extra = {"cfer_metadata.json": ""}
    torch.jit.load(str(out), _extra_files=extra)
    metadata = json.loads(extra["cfer_metadata.json"])
    assert json.loads(metadata["class_names"]) == list(CLASSES) and json.loads(metadata["regression_outputs"]) == []
    assert json.loads(metadata["input_size"]) == SIZE
    assert main(["export", "--model", str(incremental_run), "--out", str(tmp_path / "model.bin")]) == 2
    assert "unknown export file suffix" in capsys.readouterr().err
    assert main(["export", "--model", str(incremental_run), "--out", str(out), "--format", "tflite"]) == 2
    assert "known export formats" in capsys.readouterr().err


def test_overlays_of_inputs_named_alike_do_not_overwrite_each_other(multitask_checkpoint, astronaut_file,
                                                                     tmp_path) -> None:
    for folder in ("a", "b"):
        (tmp_path / "in" / folder).mkdir(parents=True)
        (tmp_path / "in" / folder / "face.png").write_bytes(astronaut_file.read_bytes())
    assert main(["predict", "--model", str(multitask_checkpoint), str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                 "--cam", "gradcam", *QUIET]) == 0
    cams = [Path(row["cam"]).name for row in _rows(tmp_path / "out")]
    assert sorted(cams) == ["face_2_face0.png", "face_face0.png"]
    assert all((tmp_path / "out" / "cam" / name).is_file() for name in cams)


def test_threads_apply_to_the_run_only(multitask_checkpoint, astronaut_file, tmp_path) -> None:
    before = torch.get_num_threads()
    assert main(["predict", "--model", str(multitask_checkpoint), str(astronaut_file), "--out", str(tmp_path),
                 "--threads", str(before + 1), *QUIET]) == 0
    assert torch.get_num_threads() == before
    assert main(["predict", "--model", str(multitask_checkpoint), str(astronaut_file), "--threads", "0", *QUIET]) == 2


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".tiff", ".bmp", ".jpg"])
def test_every_format_pil_reads_is_predicted(multitask_checkpoint, astronaut, tmp_path, suffix) -> None:
    from PIL import Image

    path = tmp_path / f"photo{suffix}"
    Image.fromarray(astronaut).save(path)
    assert main(["predict", "--model", str(multitask_checkpoint), str(path), "--out", str(tmp_path / "out"),
                 *QUIET]) == 0
    rows = _rows(tmp_path / "out")
    assert len(rows) == 1 and rows[0]["frame"] == "" and rows[0]["source"].endswith(path.name)


def test_every_frame_of_an_animated_gif_is_predicted_as_a_video_s(multitask_checkpoint, astronaut, tmp_path) -> None:
    from PIL import Image

    frames = [Image.fromarray(np.ascontiguousarray(np.roll(astronaut, shift, axis=1))) for shift in (0, 8, 16, 24)]
    gif = tmp_path / "clip.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert main(["predict", "--model", str(multitask_checkpoint), str(gif), "--out", str(tmp_path / "out"),
                 "--stride", "2", *QUIET]) == 0
    rows = _rows(tmp_path / "out")
    assert [row["frame"] for row in rows] == ["0", "2"]
    assert [float(row["time_s"]) for row in rows] == pytest.approx([0.0, 0.2])


def test_a_cut_gif_keeps_its_frames_before_the_cut_and_garbage_is_a_recorded_skip(multitask_checkpoint, astronaut,
                                                                                    tmp_path) -> None:
    from PIL import Image

    frames = [Image.fromarray(np.ascontiguousarray(np.roll(astronaut, 9 * k, axis=0))) for k in range(6)]
    whole = tmp_path / "whole.gif"
    frames[0].save(whole, save_all=True, append_images=frames[1:], duration=50)
    cut = tmp_path / "cut.gif"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    (tmp_path / "garbage.gif").write_bytes(b"GIF89a but nothing else" * 4)
    assert main(["predict", "--model", str(multitask_checkpoint), str(cut), str(tmp_path / "garbage.gif"),
                 "--out", str(tmp_path / "out"), *QUIET]) == 0
    frames_read = {int(row["frame"] or 0) for row in _rows(tmp_path / "out")}
    assert 1 <= len(frames_read) < 6
    assert "garbage.gif" in _skipped(tmp_path / "out")
