"""cfer.Predictor on real photos (scikit-image), already cropped faces, and a video the test writes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

import cfer
from cfer.data.faces import MTCNN, align_face
from cfer.models import load_checkpoint
from cfer.predict import FaceFinder, FaceTracker, Predictor, PredictorConfig, VideoReader, load_classifier
from cfer.taxonomy import get_category

from .conftest import CLASSES, SIZE, VIDEO_FRAMES

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def detector() -> MTCNN:
    return MTCNN()


@pytest.fixture(scope="module")
def predictor(multitask_checkpoint, detector) -> Predictor:
    return Predictor(load_classifier(multitask_checkpoint, device="cpu"), PredictorConfig(top_k=3), detector)


def _reference(checkpoint, crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Softmax and (valence, arousal) of one (S, S, 3) crop, computed here from the checkpoint alone."""
    model, _ = load_checkpoint(checkpoint)
    mean, std = (torch.tensor(model.data_config[key]).view(1, 3, 1, 1) for key in ("mean", "std"))
    images = (torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 255 - mean) / std
    with torch.no_grad():
        logits, affect = model.forward_multitask(images)
    return logits.softmax(1)[0].numpy(), affect[0].numpy()


def test_the_astronaut_is_found_aligned_and_classified(predictor, multitask_checkpoint, astronaut, detector) -> None:
    faces = predictor(astronaut)
    expected = detector.detect(astronaut)
    assert len(faces) == len(expected) == 1
    face = faces[0]
    np.testing.assert_allclose(face.box, expected.boxes[0], atol=1e-3)
    assert face.detection_score == pytest.approx(float(expected.probabilities[0]))
    # the crop as cfer preprocess writes faces (224 px) and the readers resize them to the model's size
    aligned = align_face(astronaut, expected.landmarks[0], size=224, margin=0.25)
    crop = np.asarray(Image.fromarray(aligned).resize((SIZE, SIZE), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(face.crop, crop)
    probabilities, affect = _reference(multitask_checkpoint, crop)
    np.testing.assert_allclose([face.probabilities[name] for name in CLASSES], probabilities, atol=1e-5)
    assert (face.valence, face.arousal) == pytest.approx(tuple(affect), abs=1e-5)
    assert list(face.probabilities) == list(CLASSES)


def test_top_k_is_the_most_probable_classes_in_order(predictor, astronaut) -> None:
    face = predictor(astronaut)[0]
    ranked = sorted(face.probabilities.items(), key=lambda item: -item[1])
    assert [name for name, _ in face.top_k] == [name for name, _ in ranked[:3]]
    assert face.label == ranked[0][0] and face.probability == ranked[0][1]
    assert sum(face.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("forced", ["happily_surprised", "sadly_angry", "happy"])
def test_a_compound_prediction_carries_its_basic_components(multitask_checkpoint, detector, astronaut, forced) -> None:
    classifier = load_classifier(multitask_checkpoint, device="cpu")
    with torch.no_grad():  # make the model predict `forced` whatever the face
        classifier.model.head.fc.bias[CLASSES.index(forced)] += 1e3
    face = Predictor(classifier, detector=detector)(astronaut)[0]
    assert face.label == forced
    assert face.components == get_category(forced).components
    assert bool(face.components) == (get_category(forced).kind == "compound")


def test_every_image_form_gives_the_same_prediction(predictor, astronaut, astronaut_file) -> None:
    reference = predictor(astronaut_file)[0].probabilities
    for image in (astronaut, Image.fromarray(astronaut), str(astronaut_file), astronaut.astype(np.float32) / 255):
        assert predictor(image)[0].probabilities == pytest.approx(reference, abs=1e-6)


def test_already_cropped_faces_are_classified_whole(predictor, multitask_checkpoint, lfw_faces) -> None:
    for gray in lfw_faces:
        faces = predictor(gray, detect=False)
        assert len(faces) == 1 and faces[0].detection_score is None and faces[0].landmarks is None
        assert faces[0].box == (0.0, 0.0, 25.0, 25.0)
        rgb = np.repeat(np.rint(gray * 255).astype(np.uint8)[..., None], 3, axis=2)
        crop = np.asarray(Image.fromarray(rgb).resize((SIZE, SIZE), Image.Resampling.BILINEAR))
        probabilities, _ = _reference(multitask_checkpoint, crop)
        np.testing.assert_allclose(list(faces[0].probabilities.values()), probabilities, atol=1e-5)


def test_an_image_without_a_face_gives_no_prediction(predictor) -> None:
    assert predictor(np.full((200, 300, 3), 127, dtype=np.uint8)) == []


def test_a_model_without_regression_head_gives_no_valence(incremental_run, detector, astronaut) -> None:
    face = Predictor(load_classifier(incremental_run, device="cpu"), detector=detector)(astronaut)[0]
    assert face.valence is None and face.arousal is None
    assert len(face.probabilities) == len(CLASSES)


def test_the_lazy_attribute_of_the_package() -> None:
    assert cfer.Predictor is Predictor
    with pytest.raises(AttributeError, match="no attribute 'Predictr'"):
        cfer.Predictr  # noqa: B018


def test_settings_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="detect_every"):
        PredictorConfig(detect_every=0)
    with pytest.raises(TypeError):
        Predictor.load("unused", detect_evry=3)


def test_video_faces_are_followed_between_detections(predictor, clip, detector) -> None:
    frames = list(predictor.predict_video(clip, progress=False))
    assert [frame.index for frame in frames] == list(range(VIDEO_FRAMES))
    assert frames[1].time == pytest.approx(0.1)
    assert all(len(frame.faces) == 1 for frame in frames)
    assert {frame.faces[0].track for frame in frames} == {0}  # one face, one track, through tracked frames
    # each followed box is where a full detection of that very frame puts the face
    finder = FaceFinder(detector, 320)
    for frame in frames:
        detected = torch.from_numpy(finder(frame.pixels)[0].box[None])
        assert float(box_iou(torch.tensor([frame.faces[0].box]), detected)) > 0.8


def test_the_tracker_detects_only_every_n_frames(detector, clip) -> None:
    with VideoReader(clip) as reader:
        pixels = [frame.pixels for frame in reader]
    every_frame, every_fourth = FaceTracker(FaceFinder(detector, 320), 1), FaceTracker(FaceFinder(detector, 320), 4)
    for frame in pixels:
        assert len(every_frame(frame)) == len(every_fourth(frame)) == 1
    assert every_frame.detections == len(pixels)
    assert every_fourth.detections == -(-len(pixels) // 4)


def test_inference_imports_nothing_that_trains() -> None:
    """`import cfer` leaves cfer.predict unloaded; cfer.Predictor loads it without Avalanche or Grad-CAM."""
    code = ("import sys, cfer; lazy = 'cfer.predict' not in sys.modules; cfer.Predictor; "
            "print(lazy, 'avalanche' in sys.modules, 'strategies' in sys.modules, 'pytorch_grad_cam' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "False", "False", "False"], result.stderr
