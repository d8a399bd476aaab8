"""cfer export: ONNX Runtime and TorchScript against PyTorch on real and synthetic faces, and the metadata."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from cfer.data import FaceRenderer
from cfer.data.faces import MTCNN, align_face
from cfer.models.export import (
    EXPORT_FORMATS,
    ModelSpec,
    export_format_of,
    export_model,
    load_exported,
    max_output_difference,
)
from cfer.predict import Predictor, load_classifier
from cfer.taxonomy import CATEGORY_NAMES

from .conftest import SIZE

pytestmark = pytest.mark.usefixtures("one_thread")

SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}


@pytest.fixture(scope="module")
def classifier(multitask_checkpoint):
    return load_classifier(multitask_checkpoint, device="cpu")


@pytest.fixture(scope="module", params=sorted(EXPORT_FORMATS))
def exported(request, classifier, tmp_path_factory):
    """``(format, path)`` of the tiny multi-task model exported in each format, once per module."""
    path = tmp_path_factory.mktemp("export") / f"model{SUFFIX[request.param]}"
    return request.param, export_model(classifier.model, classifier.spec, path, request.param)


@pytest.fixture(scope="module")
def faces(astronaut, lfw_faces) -> dict[str, torch.Tensor]:
    """(B, 3, S, S) uint8 crops: real faces (the astronaut aligned, 4 LFW crops) and 8 synthetic ones."""
    landmarks = MTCNN().detect(astronaut).landmarks[0]
    real = [align_face(astronaut, landmarks, SIZE)]
    real += [np.asarray(Image.fromarray(np.rint(face * 255).astype(np.uint8)).convert("RGB").resize((SIZE, SIZE)))
             for face in lfw_faces]
    synthetic = FaceRenderer(SIZE, seed=3).render([(subject, name, 0) for subject, name in
                                                   zip(range(8), CATEGORY_NAMES[1:])]).images
    return {"real": torch.from_numpy(np.stack(real)).permute(0, 3, 1, 2), "synthetic": torch.from_numpy(synthetic)}


@pytest.mark.parametrize("kind", ["real", "synthetic"])
def test_exported_outputs_match_pytorch(exported, classifier, faces, kind) -> None:
    _, path = exported
    model = load_exported(path)
    images = classifier.spec.normalise(faces[kind])
    with torch.no_grad():
        logits, affect = classifier.model.forward_multitask(images)
    for batch in (1, len(images)):  # the batch axis is dynamic
        got_logits, got_affect = model.run(images[:batch])
        assert got_logits.shape == (batch, len(classifier.spec.class_names))
        assert float((got_logits - logits[:batch]).abs().max()) <= 1e-4
        assert float((got_affect - affect[:batch]).abs().max()) <= 1e-4
    assert max_output_difference(classifier.model, model, images) <= 1e-4


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_the_input_contract_is_in_the_file_metadata(exported, classifier) -> None:
    format_name, path = exported
    if format_name == "onnx":  # read with the onnx package alone, as any consumer would
        metadata = {entry.key: entry.value for entry in onnx.load(str(path)).metadata_props}
        graph = onnx.load(str(path)).graph
        assert graph.input[0].name == "images" and graph.input[0].type.tensor_type.shape.dim[0].dim_param
    else:  # read with torch.jit alone
        extra = {"cfer_metadata.json": ""}
        torch.jit.load(str(path), _extra_files=extra)
        metadata = json.loads(extra["cfer_metadata.json"])
    spec = classifier.spec
    assert json.loads(metadata["class_names"]) == list(spec.class_names)
    assert json.loads(metadata["input_size"]) == spec.input_size == SIZE
    assert json.loads(metadata["mean"]) == pytest.approx(spec.mean)
    assert json.loads(metadata["std"]) == pytest.approx(spec.std)
    assert json.loads(metadata["channel_order"]) == "RGB" and json.loads(metadata["layout"]) == "NCHW"
    assert json.loads(metadata["regression_outputs"]) == ["valence", "arousal"]
    assert ModelSpec.from_metadata(metadata) == spec


def test_a_predictor_on_the_exported_file_agrees_with_the_checkpoint(exported, classifier, astronaut) -> None:
    _, path = exported
    detector = MTCNN()
    from_file = Predictor(load_classifier(path), detector=detector)(astronaut)[0]
    from_checkpoint = Predictor(classifier, detector=detector)(astronaut)[0]
    assert from_file.box == from_checkpoint.box
    assert from_file.probabilities == pytest.approx(from_checkpoint.probabilities, abs=1e-5)
    assert from_file.valence == pytest.approx(from_checkpoint.valence, abs=1e-5)


def test_formats_and_suffixes_are_checked(classifier, tmp_path) -> None:
    with pytest.raises(KeyError, match="known export formats"):
        export_model(classifier.model, classifier.spec, tmp_path / "model.tflite", "tflite")
    with pytest.raises(ValueError, match="unknown export file suffix"):
        export_format_of(tmp_path / "model.tflite")
    with pytest.raises(ValueError, match="regression"):  # a spec that does not describe the model
        export_model(classifier.model, ModelSpec(**{**vars(classifier.spec), "regression_outputs": ()}),
                     tmp_path / "model.onnx")
    with pytest.raises(ValueError, match="no cfer model spec"):
        ModelSpec.from_metadata({"format": "something else"})
