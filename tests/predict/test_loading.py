"""--model RUN_OR_FILE: which file a run directory means, the input size it was trained at, clear errors."""

from __future__ import annotations

import logging

import pytest
import safetensors.torch
import torch
import yaml

from cfer.models import save_checkpoint
from cfer.predict import load_classifier, resolve_model_file
from cfer.taxonomy import BASIC

from .conftest import CLASSES, SIZE, tiny_model


def test_an_incremental_run_means_its_first_strategy_with_a_model(incremental_run) -> None:
    # config.yaml lists ncm (which exports no model) before cfer
    assert resolve_model_file(incremental_run) == incremental_run / "runs" / "cfer" / "order_0" / "model.safetensors"
    classifier = load_classifier(incremental_run, device="cpu")
    assert classifier.spec.class_names == CLASSES and classifier.spec.phase == "incremental"
    assert classifier.spec.input_size == SIZE  # from basic.data.size of the run's config.yaml


def test_a_run_directory_with_its_own_model(incremental_run) -> None:
    classifier = load_classifier(incremental_run / "basic", device="cpu")
    assert classifier.spec.class_names == BASIC and classifier.spec.input_size == SIZE


def test_the_size_in_the_metadata_wins_over_the_run_config(tmp_path) -> None:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"data": {"size": 128}}))
    save_checkpoint(tiny_model(), tmp_path / "model.safetensors", {"classes": list(CLASSES), "size": 40})
    assert load_classifier(tmp_path, device="cpu").spec.input_size == 40
    assert load_classifier(tmp_path, device="cpu", size=56).spec.input_size == 56


def test_without_a_recorded_size_the_backbone_default_is_used_with_a_warning(tmp_path, caplog) -> None:
    model = tiny_model()
    path = save_checkpoint(model, tmp_path / "lonely.safetensors", {"classes": list(CLASSES)})
    with caplog.at_level(logging.WARNING, logger="cfer.predict"):
        spec = load_classifier(path, device="cpu").spec
    assert spec.input_size == model.data_config["input_size"][-1]
    assert "--size" in caplog.text


def test_an_unfinished_run_says_what_was_looked_for(tmp_path) -> None:
    (tmp_path / "runs" / "cfer").mkdir(parents=True)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"strategies": ["cfer"]}))
    save_checkpoint(tiny_model(False, BASIC), tmp_path / "basic" / "model.safetensors", {"classes": list(BASIC)})
    with pytest.raises(FileNotFoundError) as error:
        resolve_model_file(tmp_path)
    message = str(error.value)
    assert "model.safetensors" in message and "runs/cfer/order_0/model.safetensors" in message
    assert "basic/model.safetensors" in message  # what was found instead


@pytest.mark.parametrize("name, content, error, words", [
    ("missing.safetensors", None, FileNotFoundError, "does not exist"),
    ("notes.txt", b"not a model", ValueError, "known suffixes"),
    ("plain.safetensors", "plain", ValueError, "not a cfer checkpoint"),
    ("broken.onnx", b"\x00garbage", ValueError, "not a readable ONNX model"),
])
def test_a_wrong_model_path_is_a_clear_error(tmp_path, name, content, error, words) -> None:
    path = tmp_path / name
    if content == "plain":
        safetensors.torch.save_file({"weight": torch.zeros(2)}, str(path))
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=words):
        load_classifier(path, device="cpu")


def test_a_checkpoint_must_name_its_classes(tmp_path) -> None:
    path = save_checkpoint(tiny_model(), tmp_path / "model.safetensors", {"classes": ["happy", "sad"]})
    with pytest.raises(ValueError, match=f"name its {len(CLASSES)} classes"):
        load_classifier(path, device="cpu")


def test_an_unavailable_device_is_a_clear_error(multitask_checkpoint) -> None:
    with pytest.raises(ValueError, match="unknown device"):
        load_classifier(multitask_checkpoint, device="gpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            load_classifier(multitask_checkpoint, device="cuda")


def test_a_model_grown_by_whole_classes_loads_as_it_was_saved(tmp_path) -> None:
    # incremental and few-shot models grow their head one class at a time before they are saved
    model = tiny_model(False, BASIC)
    model.add_classes(2, generator=torch.Generator().manual_seed(0))
    path = save_checkpoint(model, tmp_path / "model.safetensors", {"classes": list(CLASSES), "phase": "fewshot",
                                                                   "size": SIZE})
    classifier = load_classifier(path, device="cpu")
    images = torch.randn(3, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = model.eval()(images)
    logits, regression = classifier.run(images)
    assert regression is None and classifier.spec.phase == "fewshot"
    torch.testing.assert_close(logits, expected)
