"""Distillation losses of the two other systems cfer implements (plain PyTorch, no Avalanche).

* **Hinton KD as Lee, Kim & Lee (2023) write it** (Applied Sciences 13(11):6409, Eq. 1)::

      loss = (1 - a) * CE(y, softmax(z_s)) + 2 a T^2 * CE(softmax(z_s / T), softmax(z_t / T))

  The text writes the soft term's arguments student first; here, as in Hinton et al. (2015), the
  teacher's tempered distribution is the target and the student's the prediction
  (``-sum softmax(z_t/T) * log_softmax(z_s/T)``), which is what makes the student imitate the
  teacher. ``2 a T^2`` is kept as written.
* **The teacher-bounded regression loss** (Chen et al., NeurIPS 2017, as Lee et al. Eqs. 2-3)::

      L_b = ||R_s - y||^2  if ||R_s - y||^2 + m > ||R_t - y||^2,  else 0
      L_reg = SmoothL1(R_s, y) + nu * L_b

  per sample, then averaged: the student is penalised only where it is not better than the teacher
  by the margin ``m``. Defaults: ``nu = 0.5`` (Chen et al.'s setting as recalled; the texts in
  ``shared/papers`` give neither value) and ``m = 0``.
* **Label-smoothed ensemble soft labels** (EmoXNet / EmoXNetLite): the teacher is an ensemble; its
  soft target is the members' averaged softmax (``average="probabilities"``, the default: the
  EmoXNet abstract says only "label-smoothen soft labels", so the averaging is an option), or the
  softmax of their averaged logits, mixed with ``epsilon``-uniform label smoothing; the student
  learns it with :func:`cfer.core.distillation.soft_cross_entropy`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from cfer.core.distillation import soft_cross_entropy

__all__ = [
    "ensemble_probabilities",
    "ensemble_soft_labels",
    "hinton_kd_loss",
    "masked_smooth_l1",
    "teacher_bounded_loss",
]


def hinton_kd_loss(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, alpha: float = 0.5,
                   temperature: float = 4.0) -> Tensor:
    """Lee et al.'s Eq. 1: hard cross-entropy plus ``2 alpha T^2`` times the tempered soft cross-entropy.

    Args:
        student_logits: Shape (B, C).
        teacher_logits: Shape (B, C).
        targets: Class indices, shape (B,).
        alpha: Weight of the soft term, in [0, 1].
        temperature: Softmax temperature T > 0.

    Returns:
        The batch-mean loss, a scalar.
    """
    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
        raise ValueError(f"alpha must be in [0, 1] and temperature > 0, got {alpha} and {temperature}")
    hard = F.cross_entropy(student_logits, targets)
    soft = soft_cross_entropy(F.softmax(teacher_logits / temperature, dim=-1), student_logits / temperature)
    return (1.0 - alpha) * hard + 2.0 * alpha * temperature**2 * soft


def teacher_bounded_loss(student: Tensor, teacher: Tensor, target: Tensor, margin: float = 0.0,
                         nu: float = 0.5) -> Tensor:
    """Chen et al.'s bounded regression loss: SmoothL1 plus ``nu`` times the student's squared error where
    it is not better than the teacher's by ``margin``.

    Args:
        student: Student regression outputs, shape (B, D) (e.g. D = 2: valence, arousal).
        teacher: Teacher outputs, shape (B, D); no gradient flows into them.
        target: Ground truth, shape (B, D); rows with a NaN are left out.
        margin: ``m``.
        nu: Weight of the bounded term.

    Returns:
        The mean over the kept rows, a scalar (0 when no row is kept).
    """
    keep = ~torch.isnan(target).any(dim=-1)
    student, teacher, target = student[keep], teacher[keep].detach(), target[keep]
    if not len(target):
        return student.sum() * 0.0
    student_error = (student - target).pow(2).sum(-1)
    teacher_error = (teacher - target).pow(2).sum(-1)
    bounded = torch.where(student_error + margin > teacher_error, student_error, torch.zeros_like(student_error))
    return masked_smooth_l1(student, target) + nu * bounded.mean()


def masked_smooth_l1(prediction: Tensor, target: Tensor) -> Tensor:
    """SmoothL1 summed over the outputs (B, D), averaged over the rows whose target has no NaN (0 if none)."""
    keep = ~torch.isnan(target).any(dim=-1)
    if not keep.any():
        return prediction.sum() * 0.0
    return F.smooth_l1_loss(prediction[keep], target[keep], reduction="none").sum(-1).mean()


def ensemble_probabilities(member_logits: Sequence[Tensor], average: Literal["probabilities", "logits"] =
                           "probabilities", temperature: float = 1.0) -> Tensor:
    """The ensemble's distribution (B, C): the members' mean softmax, or the softmax of their mean logits."""
    if not member_logits:
        raise ValueError("an ensemble needs at least one member")
    stacked = torch.stack([logits.detach() for logits in member_logits])
    if average == "probabilities":
        return F.softmax(stacked / temperature, dim=-1).mean(0)
    if average == "logits":
        return F.softmax(stacked.mean(0) / temperature, dim=-1)
    raise ValueError(f"average must be 'probabilities' or 'logits', got {average!r}")


def ensemble_soft_labels(member_logits: Sequence[Tensor], targets: Tensor | None = None, epsilon: float = 0.1,
                         average: Literal["probabilities", "logits"] = "probabilities",
                         temperature: float = 1.0) -> Tensor:
    """The ensemble's soft target, label-smoothed.

    Args:
        member_logits: One (B, C) tensor per member.
        targets: Optional class indices (B,); when given, smoothing mixes the one-hot label's
            ``1 - epsilon`` with the ensemble's distribution instead (EmoXNetLite's "label-smoothed
            soft labels": ``(1 - eps) * ensemble + eps * uniform`` without targets).
        epsilon: Share of the uniform (or the ensemble, with ``targets``) in the target, in [0, 1).
        average: Average the members' softmax (``probabilities``) or their logits.
        temperature: Softmax temperature of the members.

    Returns:
        Probabilities, shape (B, C); rows sum to 1.
    """
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
    ensemble = ensemble_probabilities(member_logits, average, temperature)
    if targets is None:
        return (1.0 - epsilon) * ensemble + epsilon / ensemble.shape[-1]
    return (1.0 - epsilon) * F.one_hot(targets, ensemble.shape[-1]).to(ensemble) + epsilon * ensemble
