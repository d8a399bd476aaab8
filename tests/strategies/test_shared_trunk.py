"""With augmentation the teacher reads the student's frozen trunk instead of computing its own."""

from __future__ import annotations

import torch

from cfer.core.distillation import frozen_copy
from cfer.models import ModelConfig, create_model, freeze_backbone
from strategies.plugins import SharedTrunk


def _student():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = create_model(ModelConfig(backbone="test_efficientnet", pretrained="none"), 3)
    freeze_backbone(model, 2)
    return model.train()


def test_the_teachers_logits_from_the_shared_trunk_are_its_own() -> None:
    student = _student()
    teacher = frozen_copy(student)
    images = torch.randn(5, 3, 32, 32)
    shared = SharedTrunk.attach(student, teacher, images[:2])
    assert shared is not None
    student(images)  # the training forward: its trunk output is kept
    with torch.no_grad():
        assert torch.equal(shared.logits(), teacher(images))
    shared.release()


def test_a_teacher_with_another_trunk_computes_its_own() -> None:
    student = _student()
    teacher = frozen_copy(student)
    with torch.no_grad():
        next(teacher.backbone.parameters()).add_(1.0)  # the stem: in the frozen trunk
    assert SharedTrunk.attach(student, teacher, torch.randn(2, 3, 32, 32)) is None
    assert SharedTrunk.attach(torch.nn.Linear(2, 2), teacher, torch.randn(2, 2)) is None  # not a timm backbone
