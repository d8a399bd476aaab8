"""Images in any form, folders searched recursively, and video frames with their index and time."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cfer.data.images import BadImageError
from cfer.data.reading import SkipLog
from cfer.predict import BadVideoError, VideoReader, as_rgb, collect_inputs

from .conftest import VIDEO_FRAMES


def test_as_rgb_converts_every_form(astronaut) -> None:
    gray = astronaut[..., 0]
    np.testing.assert_array_equal(as_rgb(gray), np.repeat(gray[..., None], 3, axis=2))
    rgba = np.concatenate([astronaut, np.full(astronaut.shape[:2] + (1,), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(as_rgb(rgba), astronaut)
    np.testing.assert_array_equal(as_rgb(astronaut / 255.0), astronaut)
    np.testing.assert_array_equal(as_rgb(Image.fromarray(astronaut).convert("L")), as_rgb(np.asarray(
        Image.fromarray(astronaut).convert("L"))))
    with pytest.raises(ValueError, match="shape"):
        as_rgb(np.zeros((4, 4, 2)))


def test_as_rgb_names_a_bad_file(tmp_path) -> None:
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(BadImageError, match="text.png"):
        as_rgb(tmp_path / "text.png")
    with pytest.raises(FileNotFoundError, match="gone.png"):
        as_rgb(tmp_path / "gone.png")


def test_folders_are_searched_recursively_without_hidden_files_or_repeats(tmp_path, astronaut_file, clip) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "face.JPG").write_bytes(astronaut_file.read_bytes())
    (tmp_path / "a" / "clip.MP4").write_bytes(clip.read_bytes())
    (tmp_path / "a" / ".hidden.png").write_bytes(astronaut_file.read_bytes())
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x.png").write_bytes(astronaut_file.read_bytes())
    (tmp_path / "a" / "notes.md").write_text("not media")
    skips = SkipLog()
    found = collect_inputs([tmp_path, tmp_path / "a" / "b" / "face.JPG"], skips)
    assert [(file.path.relative_to(tmp_path).as_posix(), file.kind) for file in found] == [
        ("a/b/face.JPG", "image"), ("a/clip.MP4", "video")]
    assert skips.items == []


def test_video_frames_come_with_index_and_time(clip) -> None:
    with VideoReader(clip, stride=3) as reader:
        frames = list(reader)
        assert reader.fps == pytest.approx(10.0)
        assert reader.frames_read == VIDEO_FRAMES and not reader.truncated
    assert [frame.index for frame in frames] == list(range(0, VIDEO_FRAMES, 3))
    assert [frame.time for frame in frames] == pytest.approx([index / 10 for index in range(0, VIDEO_FRAMES, 3)])
    assert frames[0].pixels.shape == (240, 320, 3) and frames[0].pixels.dtype == np.uint8


def test_a_file_that_is_no_video_is_a_bad_video(tmp_path) -> None:
    (tmp_path / "fake.mp4").write_bytes(b"\x00" * 500)
    with pytest.raises(BadVideoError, match="fake.mp4"), VideoReader(tmp_path / "fake.mp4") as reader:
        list(reader)
