"""The distillation losses of Lee et al. (2023) and EmoXNet against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from cfer.core.kd import ensemble_soft_labels, hinton_kd_loss, teacher_bounded_loss


def test_hinton_kd_matches_a_hand_computation() -> None:
    student = torch.tensor([[2.0, 0.0]])
    teacher = torch.tensor([[0.0, 2.0]])
    alpha, temperature = 0.25, 2.0
    # hard: -log softmax([2, 0])[0] = log(1 + e^-2)
    hard = math.log(1 + math.exp(-2))
    # soft: teacher softmax([0, 1]) = (1/(1+e), e/(1+e)); student log-softmax([1, 0]) = (-log(1+e^-1), -log(1+e))
    p0, p1 = 1 / (1 + math.e), math.e / (1 + math.e)
    soft = p0 * math.log(1 + math.exp(-1)) + p1 * math.log(1 + math.e)
    expected = (1 - alpha) * hard + 2 * alpha * temperature**2 * soft
    assert hinton_kd_loss(student, teacher, torch.tensor([0]), alpha, temperature).item() == pytest.approx(expected)
    assert hinton_kd_loss(student, teacher, torch.tensor([0]), 0.0, temperature).item() == pytest.approx(hard)


def test_teacher_bounded_loss_penalises_only_a_student_worse_than_its_teacher() -> None:
    target = torch.tensor([[0.0, 0.0], [0.0, 0.0], [float("nan"), 0.0]])
    student = torch.tensor([[1.0, 0.0], [0.2, 0.0], [5.0, 5.0]], requires_grad=True)
    teacher = torch.tensor([[0.5, 0.0], [0.5, 0.0], [0.0, 0.0]])
    # row 1: student error 1 > teacher 0.25: bounded 1; SmoothL1 0.5 (|1| -> 1 - 0.5). row 2: 0.04 + 0 < 0.25: 0;
    # SmoothL1 0.5 * 0.2^2 = 0.02. row 3 has a NaN target: left out.
    loss = teacher_bounded_loss(student, teacher, target, margin=0.0, nu=0.5)
    assert loss.item() == pytest.approx(((0.5 + 0.5 * 1.0) + 0.02) / 2)
    # with a margin of 0.3 the second student is no longer better enough: 0.04 + 0.3 > 0.25
    wide = teacher_bounded_loss(student, teacher, target, margin=0.3, nu=0.5)
    assert wide.item() == pytest.approx(((0.5 + 0.5) + (0.02 + 0.5 * 0.04)) / 2)
    loss.backward()
    assert torch.isfinite(student.grad).all() and student.grad[2].abs().sum() == 0


def test_ensemble_soft_labels_average_and_smooth() -> None:
    first, second = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])
    # softmaxes (0.5, 0.5) and (0.75, 0.25): mean (0.625, 0.375); 0.1-uniform: 0.9 * p + 0.05
    smoothed = ensemble_soft_labels([first, second], epsilon=0.1)
    assert smoothed.tolist()[0] == pytest.approx([0.9 * 0.625 + 0.05, 0.9 * 0.375 + 0.05])
    by_logits = ensemble_soft_labels([first, second], epsilon=0.0, average="logits")
    assert by_logits[0, 0].item() == pytest.approx(math.sqrt(3) / (math.sqrt(3) + 1))  # softmax(log(3)/2, 0)
    with_label = ensemble_soft_labels([first, second], torch.tensor([1]), epsilon=0.2)
    assert with_label.tolist()[0] == pytest.approx([0.2 * 0.625, 0.8 + 0.2 * 0.375])
    with pytest.raises(ValueError, match="at least one member"):
        ensemble_soft_labels([])
