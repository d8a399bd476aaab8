"""The paper's protocol on tiny cached features: both metrics, the stub, every method, shot selection."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from cfer.fewshot import (
    FEWSHOT_METHODS,
    FeatureSet,
    PaperConfig,
    PaperProtocolConfig,
    evaluate_new_class,
    learn_new_class,
    new_class_metrics,
    run_paper_protocol,
    select_shots,
)
from cfer.models.classifier import ExpressionClassifier
from cfer.models.heads import LinearHead

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

BASIC = ("happy", "surprised", "disgusted")  # b0..b2 below
COMPOUND = ("happily_surprised", "happily_disgusted")  # c0, c1: named compounds, as the compose method needs
CLASSES = BASIC + COMPOUND
DIM = 8


def tiny_teacher() -> ExpressionClassifier:
    """A stand-in basic model: identity 'backbone' on cached features, a linear head that knows b0..b2."""
    torch.manual_seed(0)
    head = LinearHead(DIM, len(BASIC))
    with torch.no_grad():
        head.fc.weight.copy_(3 * torch.eye(len(BASIC), DIM))
        head.fc.bias.zero_()
    return ExpressionClassifier(nn.Identity(), head).eval()


def tiny_features(subjects: range, seed: int) -> FeatureSet:
    generator = torch.Generator().manual_seed(seed)
    targets = torch.arange(len(CLASSES)).repeat(len(subjects))
    subject_ids = torch.tensor(list(subjects)).repeat_interleave(len(CLASSES))
    features = torch.eye(len(CLASSES), DIM)[targets] * 2 + 0.3 * torch.randn(len(targets), DIM, generator=generator)
    return FeatureSet(features, targets, subject_ids, CLASSES)


def test_new_class_metrics_by_hand():
    # outputs 0..2 basic, 3 new; 2 images per class
    targets = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    predictions = torch.tensor([0, 3, 1, 1, 3, 3, 3, 0])
    metrics = new_class_metrics(predictions, targets, new_class=3, basic_classes=[0, 1, 2])
    assert metrics["new_class_only_accuracy"] == metrics["new_class_recall"] == 0.5
    assert metrics["balanced_accuracy"] == pytest.approx((0.5 + 1.0 + 0.0 + 0.5) / 4)
    assert metrics["new_class_precision"] == pytest.approx(1 / 4)  # 4 predicted new, 1 right
    assert metrics["basic_accuracy"] == pytest.approx(3 / 6)


def test_always_new_stub_scores_one_on_the_reference_figure_and_chance_on_the_honest_one():
    held_out = tiny_features(range(10, 14), seed=1)
    keep = held_out.targets <= 3  # basic classes and c0
    inputs, targets = held_out.features[keep], held_out.targets[keep]  # c0 (index 3) is output 3 already

    def always_new(batch: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(batch), len(BASIC) + 1)
        logits[:, -1] = 1.0
        return logits

    metrics = evaluate_new_class(always_new, inputs, targets, new_class=3, basic_classes=[0, 1, 2], batch_size=5)
    assert metrics["new_class_only_accuracy"] == 1.0
    assert metrics["balanced_accuracy"] == pytest.approx(1 / 4)
    assert metrics["basic_accuracy"] == 0.0
    assert metrics["new_class_precision"] == pytest.approx(1 / 4)


@pytest.mark.parametrize("method", list(FEWSHOT_METHODS))
def test_protocol_runs_every_method_and_reports_both_metrics(method):
    teacher = tiny_teacher()
    before = [p.detach().clone() for p in teacher.parameters()]
    config = PaperProtocolConfig(shots=[1, 3, "all"], seeds=2)
    result = run_paper_protocol(teacher, BASIC, tiny_features(range(6), seed=0), tiny_features(range(10, 16), seed=1),
                                config, COMPOUND, methods=[method],
                                method_options={method: {"steps": 10}} if FEWSHOT_METHODS[method].trains else {})
    assert list(result["methods"]) == [method]
    entry = result["methods"][method]
    assert len(entry["runs"]) == len(COMPOUND) * 3 * 2
    assert result["shots"] == ["1", "3", "all"]
    assert {r["n_shots"] for r in entry["runs"] if r["shots"] == "all"} == {6}
    for shots in result["shots"]:
        row = entry["per_shot"][shots]
        for metric in ("new_class_only_accuracy", "balanced_accuracy", "basic_accuracy"):
            assert 0.0 <= row[metric]["mean"] <= 1.0 and row[metric]["n"] == len(COMPOUND) * 2
    assert set(entry["per_class"]) == set(COMPOUND)
    assert result["chance_balanced_accuracy"] == pytest.approx(1 / 4)
    assert result["basic_accuracy_before"] > 0.9  # the stand-in teacher separates b0..b2
    assert entry["basic_accuracy_before"] > 0.9  # and so do the class means of its training features
    # the teacher is left as it was: it is the distillation target of every run
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))
    assert teacher.num_classes == len(BASIC)


def test_training_free_methods_learn_separable_classes_and_keep_the_basic_ones():
    # c0 and c1 are as far from the basic classes as those are from each other: a method that keeps
    # the basic classes and learns the new one scores near 1 on both sides
    result = run_paper_protocol(tiny_teacher(), BASIC, tiny_features(range(6), seed=0),
                                tiny_features(range(10, 16), seed=1), PaperProtocolConfig(shots=[3], seeds=2),
                                COMPOUND, methods=["imprint", "teen"])
    for method in ("imprint", "teen"):
        row = result["methods"][method]["per_shot"]["3"]
        assert row["balanced_accuracy"]["mean"] > 0.9 and row["basic_accuracy"]["mean"] > 0.9, method


def test_learn_new_class_trains_the_last_blocks_on_images():
    from cfer.models.classifier import ModelConfig, create_model

    teacher = create_model(ModelConfig(pretrained="none"), num_classes=3).eval()
    images = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)
    frozen_before = {n: p.detach().clone() for n, p in teacher.named_parameters()}
    student = learn_new_class(teacher, images, PaperConfig(steps=2, batch_size=4), seed=0, trainable_blocks=1)
    assert student.num_classes == 4 and teacher.num_classes == 3
    assert all(torch.equal(p, frozen_before[n]) for n, p in teacher.named_parameters())
    changed = [n for n, p in student.named_parameters() if n in frozen_before and p.shape == frozen_before[n].shape
               and not torch.equal(p, frozen_before[n])]
    assert any(n.startswith("backbone") for n in changed)  # its last block group trained
    with pytest.raises(ValueError, match="trainable_blocks"):
        learn_new_class(teacher, images, PaperConfig(), seed=0, trainable_blocks=0)


def test_only_the_paper_method_trains_on_images():
    dataset = SimpleNamespace(classes=CLASSES, targets=torch.zeros(1), images=torch.zeros(1))
    with pytest.raises(ValueError, match="only the 'paper' method"):
        run_paper_protocol(tiny_teacher(), BASIC, dataset, dataset, PaperProtocolConfig(trainable_blocks=1), COMPOUND,
                           methods=["paper", "imprint"])


def test_select_shots_nested_deterministic_and_checked():
    positions = np.arange(100, 120)
    one, three = select_shots(positions, 1, seed=0, class_index=2), select_shots(positions, 3, seed=0, class_index=2)
    assert one[0] == three[0] and len(set(three)) == 3
    assert np.array_equal(three, select_shots(positions, 3, seed=0, class_index=2))
    assert not np.array_equal(select_shots(positions, 5, seed=1, class_index=2), select_shots(positions, 5, 0, 2))
    assert sorted(select_shots(positions, "all", 0, 2)) == list(positions)
    with pytest.raises(ValueError, match="only 20"):
        select_shots(positions, 21, 0, 0)
    with pytest.raises(ValueError, match="positive integer or 'all'"):
        select_shots(positions, "some", 0, 0)
