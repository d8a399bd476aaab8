"""Knowledge distillation of the basic-expression model into the growing model (plain PyTorch).

Maiden & Nakisa (2023), "Complex Facial Expression Recognition Using Deep Knowledge
Distillation of Basic Features", train step ``i`` (0 for the first compound class) on

    loss = (1 - g_i) * CE(y, student) + g_i * CE(softmax(teacher / T), softmax(student / T)),
    g_i = g * exp(-i / (1 + e)),   g = 0.1,   T = 3,   e = Euler's number,

where the teacher logits are zero-padded to the student's class count. This follows the
reference implementation (github.com/AngusMaiden/complex-FER, ``src/models/train.py``,
``ContinualLearner.distillation_loss`` / ``compile`` / ``train_step``): the soft term is Keras'
``CategoricalCrossentropy(from_logits=False)`` between the two tempered softmaxes, averaged over
the batch and *not* multiplied by ``T ** 2``.
"""

from __future__ import annotations

import copy
import math

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DistillationLoss",
    "distillation_loss",
    "frozen_copy",
    "kd_weight",
    "pad_logits",
    "soft_cross_entropy",
]


def frozen_copy(model: nn.Module) -> nn.Module:
    """Deep copy of ``model`` in eval mode with gradients disabled: a distillation teacher.

    Args:
        model: Model to copy.

    Returns:
        The copy, on the same device.
    """
    teacher = copy.deepcopy(model)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def pad_logits(teacher_logits: Tensor, num_classes: int) -> Tensor:
    """Append zero logits for the classes the teacher has never seen.

    A zero *logit* (not a zero probability) is what the reference pads with, so after the
    softmax each new class receives some probability mass from the teacher.

    Args:
        teacher_logits: Shape ``(batch, teacher_classes)``.
        num_classes: Class count of the student, ``>= teacher_classes``.

    Returns:
        Shape ``(batch, num_classes)``; the first ``teacher_classes`` columns are the input.

    Raises:
        ValueError: If the teacher has more classes than ``num_classes``.
    """
    missing = num_classes - teacher_logits.shape[-1]
    if missing < 0:
        raise ValueError(
            f"teacher has {teacher_logits.shape[-1]} classes, more than the student's {num_classes}"
        )
    return F.pad(teacher_logits, (0, missing))


def soft_cross_entropy(soft_targets: Tensor, logits: Tensor) -> Tensor:
    """Cross-entropy with a probability vector as target, averaged over the batch.

    Computes ``mean_b(-sum_c soft_targets[b, c] * log_softmax(logits)[b, c])``. Keras clips the
    predicted probabilities to ``[1e-7, 1 - 1e-7]`` instead of using a log-softmax; the two agree
    unless a probability falls below ``1e-7``.

    Args:
        soft_targets: Target distribution, shape ``(batch, classes)``, rows summing to 1.
        logits: Predicted logits, shape ``(batch, classes)``.

    Returns:
        Scalar tensor.
    """
    return -(soft_targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def distillation_loss(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float = 3.0
) -> Tensor:
    """Soft-target cross-entropy between tempered teacher and student distributions.

    Args:
        student_logits: Shape ``(batch, classes)``.
        teacher_logits: Shape ``(batch, teacher_classes)`` with ``teacher_classes <= classes``;
            zero-padded with :func:`pad_logits`.
        temperature: Softmax temperature applied to both sides.

    Returns:
        Scalar tensor, not scaled by ``temperature ** 2`` (as in the reference).
    """
    teacher_logits = pad_logits(teacher_logits, student_logits.shape[-1])
    soft_targets = F.softmax(teacher_logits / temperature, dim=-1)
    return soft_cross_entropy(soft_targets, student_logits / temperature)


def kd_weight(step: int, initial_weight: float = 0.1) -> float:
    """Weight of the distillation term at an incremental step, ``g * exp(-step / (1 + e))``.

    Args:
        step: Index of the incremental step, 0 for the first class learned after the basic
            phase (the loop index ``i`` of ``cont()`` in the reference ``src/complex_FER.py``).
        initial_weight: Weight at step 0 (the paper's ``g``).

    Returns:
        The weight ``g_i``; the classification term gets ``1 - g_i``.

    Raises:
        ValueError: If ``step`` is negative.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return initial_weight * math.exp(-step / (1.0 + math.e))


class DistillationLoss(nn.Module):
    """``(1 - weight) * CE(targets, student) + weight * distillation_loss(student, teacher)``.

    Args:
        temperature: Softmax temperature of the distillation term.
    """

    def __init__(self, temperature: float = 3.0) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(
        self, student_logits: Tensor, targets: Tensor, teacher_logits: Tensor, weight: float
    ) -> Tensor:
        """Compute the combined loss.

        Args:
            student_logits: Shape ``(batch, classes)``.
            targets: Class indices, shape ``(batch,)``.
            teacher_logits: Shape ``(batch, teacher_classes)``, ``teacher_classes <= classes``.
            weight: Share of the distillation term, e.g. :func:`kd_weight` of the step.

        Returns:
            Scalar tensor.
        """
        classification = F.cross_entropy(student_logits, targets)
        distillation = distillation_loss(student_logits, teacher_logits, self.temperature)
        return (1.0 - weight) * classification + weight * distillation
