"""Tests of the distillation loss and its weight schedule against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cfer.core.distillation import (
    DistillationLoss,
    distillation_loss,
    kd_weight,
    pad_logits,
    soft_cross_entropy,
)


def test_pad_logits_appends_zero_logits() -> None:
    teacher = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    padded = pad_logits(teacher, 4)
    assert padded.shape == (2, 4)
    assert torch.equal(padded[:, :2], teacher)
    assert torch.equal(padded[:, 2:], torch.zeros(2, 2))


def test_pad_logits_rejects_a_larger_teacher() -> None:
    with pytest.raises(ValueError):
        pad_logits(torch.zeros(1, 5), 3)


def _hand_softmax(logits: torch.Tensor) -> torch.Tensor:
    exps = torch.exp(logits)
    return exps / exps.sum(dim=1, keepdim=True)


def test_distillation_loss_equals_hand_computation() -> None:
    temperature = 3.0
    student = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, -3.0]], dtype=torch.float64)
    teacher = torch.tensor([[1.5, -0.5], [-2.0, 4.0]], dtype=torch.float64)
    # the teacher never saw class 2: its logit is 0 before the tempered softmax
    teacher_padded = torch.tensor([[1.5, -0.5, 0.0], [-2.0, 4.0, 0.0]], dtype=torch.float64)
    p_teacher = _hand_softmax(teacher_padded / temperature)
    p_student = _hand_softmax(student / temperature)
    per_sample = -(p_teacher * torch.log(p_student)).sum(dim=1)
    expected = per_sample.mean()  # Keras averages over the batch; no T ** 2 factor
    assert torch.allclose(distillation_loss(student, teacher, temperature), expected, atol=1e-12)


def test_distillation_loss_matches_keras_clipped_cross_entropy() -> None:
    # Keras CategoricalCrossentropy(from_logits=False): normalise, clip to [1e-7, 1 - 1e-7]
    torch.manual_seed(0)
    student, teacher = torch.randn(6, 5), torch.randn(6, 3)
    y_true = F.softmax(F.pad(teacher, (0, 2)) / 3.0, dim=1)
    y_pred = F.softmax(student / 3.0, dim=1)
    y_pred = (y_pred / y_pred.sum(dim=1, keepdim=True)).clamp(1e-7, 1 - 1e-7)
    keras = -(y_true * torch.log(y_pred)).sum(dim=1).mean()
    assert torch.allclose(distillation_loss(student, teacher, 3.0), keras, atol=1e-6)


def test_soft_cross_entropy_of_one_hot_targets_is_cross_entropy() -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(5, 4), torch.tensor([0, 3, 1, 1, 2])
    one_hot = F.one_hot(labels, 4).float()
    assert torch.allclose(soft_cross_entropy(one_hot, logits), F.cross_entropy(logits, labels))


@pytest.mark.parametrize("step", [0, 1, 2, 5, 14])
def test_kd_weight_follows_the_paper_schedule(step: int) -> None:
    expected = 0.1 * math.exp(-step / (1 + math.e))
    assert kd_weight(step) == pytest.approx(expected, rel=1e-12)
    assert kd_weight(step, initial_weight=0.4) == pytest.approx(4 * expected, rel=1e-12)


def test_kd_weight_starts_at_g_and_decays_by_a_constant_factor() -> None:
    assert kd_weight(0) == 0.1
    ratios = [kd_weight(step + 1) / kd_weight(step) for step in range(4)]
    assert ratios == pytest.approx([math.exp(-1 / (1 + math.e))] * 4)


def test_kd_weight_rejects_negative_steps() -> None:
    with pytest.raises(ValueError):
        kd_weight(-1)


def test_distillation_loss_module_combines_both_terms() -> None:
    torch.manual_seed(0)
    student = torch.randn(4, 3, requires_grad=True)
    teacher = torch.randn(4, 2, requires_grad=True)
    labels = torch.tensor([0, 2, 1, 2])
    weight = 0.07
    loss = DistillationLoss(temperature=3.0)(student, labels, teacher, weight)
    p_teacher = _hand_softmax(torch.cat([teacher, torch.zeros(4, 1)], dim=1) / 3.0)
    soft = -(p_teacher * torch.log(_hand_softmax(student / 3.0))).sum(dim=1).mean()
    hard = -torch.log(_hand_softmax(student)[torch.arange(4), labels]).mean()
    assert torch.allclose(loss, (1 - weight) * hard + weight * soft, atol=1e-6)
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


class CountingTeacher(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rows = 0
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        self.calls.append(len(x))
        return torch.stack([x.sum(1), -x.sum(1)], 1)


def test_teacher_memo_runs_the_teacher_once_per_sample() -> None:
    from cfer.core.distillation import TeacherMemo

    memo, teacher = TeacherMemo(), CountingTeacher()
    inputs, ids = torch.randn(6, 3), torch.tensor([4, 0, 5, 1, 2, 3])
    memo.fill(teacher, inputs, ids, batch_size=5)  # a last chunk of one joins the one before
    assert teacher.calls == [6]
    for order in (torch.tensor([2, 0, 5]), torch.tensor([1, 3, 4])):
        assert torch.equal(memo(teacher, inputs[order], ids[order]), teacher.forward(inputs[order]))
    assert teacher.calls == [6, 3, 3]  # the two direct calls above, none from the memo
    assert memo.changed == 0


def test_teacher_memo_computes_batches_with_unseen_or_changed_samples() -> None:
    from cfer.core.distillation import TeacherMemo

    memo, teacher = TeacherMemo(), CountingTeacher()
    inputs, ids = torch.randn(4, 3), torch.arange(4)
    memo(teacher, inputs[:1], ids[:1])  # a batch of one is computed but not stored
    assert memo.missing(ids[:1]).tolist() == [True]
    memo(teacher, inputs[:3], ids[:3])
    assert memo.missing(ids).tolist() == [False, False, False, True]
    calls = len(teacher.calls)
    memo(teacher, inputs[1:3], ids[1:3])
    assert len(teacher.calls) == calls  # served from memory
    augmented = inputs[1:3] + 0.1
    assert torch.equal(memo(teacher, augmented, ids[1:3]), teacher.forward(augmented))
    assert memo.changed == 2
