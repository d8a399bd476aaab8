"""Tiny checkpoints, real photos and a short video for the tests of cfer.predict."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image
from skimage import data

from cfer.models import ModelConfig, create_model, save_checkpoint
from cfer.taxonomy import BASIC

CLASSES = (*BASIC, "happily_surprised", "sadly_angry")
SIZE = 48  # face-crop side of the tiny models
VIDEO_FRAMES = 8


def tiny_model(regression: bool = True, classes: tuple[str, ...] = CLASSES):
    """A randomly initialised test_efficientnet classifier (a few thousand parameters), in eval mode."""
    config = ModelConfig(backbone="test_efficientnet", pretrained="none", regression_outputs=2 if regression else 0)
    return create_model(config, len(classes)).eval()


@pytest.fixture(scope="session")
def multitask_checkpoint(tmp_path_factory) -> Path:
    """A distilled-style checkpoint: classes, valence/arousal head, and its training size in the metadata."""
    path = tmp_path_factory.mktemp("multitask") / "model.safetensors"
    return save_checkpoint(tiny_model(), path, {"classes": list(CLASSES), "phase": "distill", "size": SIZE})


@pytest.fixture(scope="session")
def incremental_run(tmp_path_factory) -> Path:
    """The layout of `cfer train-incremental`'s output: config.yaml, basic/ and runs/<strategy>/order_0/."""
    root = tmp_path_factory.mktemp("incremental")
    config = {"basic": {"data": {"size": SIZE}}, "strategies": ["ncm", "cfer"]}  # ncm exports no model
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    save_checkpoint(tiny_model(False, BASIC), root / "basic" / "model.safetensors", {"classes": list(BASIC),
                                                                                     "phase": "basic"})
    save_checkpoint(tiny_model(False), root / "runs" / "cfer" / "order_0" / "model.safetensors",
                    {"classes": list(CLASSES), "phase": "incremental", "strategy": "cfer"})
    return root


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's astronaut at half size (a quarter of the detection time), (256, 256, 3) uint8 RGB, one face."""
    return cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="session")
def astronaut_file(tmp_path_factory, astronaut) -> Path:
    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    return path


@pytest.fixture(scope="session")
def lfw_faces() -> np.ndarray:
    """Four already cropped faces of scikit-image's LFW subset, (4, 25, 25) float in [0, 1], grayscale."""
    return data.lfw_subset()[:4]


def write_clip(path: Path, image: np.ndarray, frames: int = VIDEO_FRAMES, fps: float = 10.0) -> Path:
    """A short clip of ``image`` panning down by a pixel per frame, written with OpenCV (mp4v)."""
    frame_size = (320, 240)
    picture = cv2.resize(image, (320, 320), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frame_size)
    assert writer.isOpened()
    for index in range(frames):
        window = np.ascontiguousarray(picture[10 + index:250 + index])
        writer.write(cv2.cvtColor(window, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="session")
def clip(tmp_path_factory, astronaut) -> Path:
    """An mp4 of the astronaut's face moving through 8 frames of 320 x 240."""
    return write_clip(tmp_path_factory.mktemp("videos") / "clip.mp4", astronaut)
