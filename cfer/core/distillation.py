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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DistillationLoss",
    "TeacherMemo",
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


class TeacherMemo:
    """A frozen teacher's logits per sample, computed once per sample.

    A frozen teacher maps an unchanged input to unchanged logits, so over the epochs of a step (and,
    for the basic-phase teacher, over the whole stream) each sample needs one teacher pass, not one
    per epoch. :meth:`fill` computes the logits of samples ahead of training; a lookup
    (:meth:`__call__`) computes the whole mini-batch when one of its samples is missing. Each stored row
    keeps a fingerprint of its input (sum and sum of squares, in float64): a sample whose input
    changed (augmentation) is computed again, and :attr:`changed` counts how often that happened, so
    the caller can stop memoising.

    Rows are never computed, nor stored, from a batch of one: CPU kernels pick another algorithm for
    a single sample, which changes the last bits of the logits, while batches of two or more give the
    same logits whatever their size and company (the batch-invariance the cached and uncached paths
    of ``cfer train-incremental`` rely on to agree).
    """

    def __init__(self) -> None:
        self.logits: Tensor | None = None  # (capacity, classes)
        self.prints: Tensor | None = None  # (capacity, 2) float64 fingerprints of the inputs
        self.known: Tensor | None = None  # (capacity,) bool
        self.changed = 0
        """Samples seen again with another input."""

    def missing(self, sample_ids: Tensor) -> Tensor:
        """Which of ``sample_ids`` (shape ``(n,)``) have no stored logits, as a bool mask ``(n,)``."""
        if self.known is None:
            return torch.ones(len(sample_ids), dtype=torch.bool)
        ids = sample_ids.to(self.known.device).long()
        inside = ids < len(self.known)
        found = torch.zeros(len(ids), dtype=torch.bool, device=self.known.device)
        found[inside] = self.known[ids[inside]]
        return ~found.cpu()

    @torch.no_grad()
    def fill(self, teacher: nn.Module, inputs: Tensor, sample_ids: Tensor, batch_size: int) -> None:
        """Compute and store the logits of ``inputs`` (shape ``(n, ...)``) in chunks of ``batch_size``.

        Args:
            teacher: The frozen teacher.
            inputs: Inputs exactly as training will see them.
            sample_ids: Their ids, shape ``(n,)``.
            batch_size: Chunk size (a last chunk of one sample joins the one before).
        """
        starts = list(range(0, len(inputs), batch_size))
        if len(starts) > 1 and len(inputs) - starts[-1] == 1:
            starts.pop()
        for start, end in zip(starts, starts[1:] + [len(inputs)]):
            if end - start > 1:
                self._store(teacher(inputs[start:end]), inputs[start:end], sample_ids[start:end].to(inputs.device))

    @torch.no_grad()
    def __call__(self, teacher: nn.Module, inputs: Tensor, sample_ids: Tensor) -> Tensor:
        """The teacher's logits of ``inputs``, from memory where their sample was seen with that input.

        Args:
            teacher: The frozen teacher, inputs ``(batch, ...)`` to logits ``(batch, classes)``.
            inputs: The mini-batch, shape ``(batch, ...)``.
            sample_ids: Non-negative id of each sample, shape ``(batch,)``.

        Returns:
            Logits, shape ``(batch, classes)``.
        """
        sample_ids = sample_ids.to(inputs.device).long()
        if self.known is None or bool(self.missing(sample_ids).any()):
            computed = teacher(inputs)
            if len(inputs) > 1:
                self._store(computed, inputs, sample_ids)
            return computed
        assert self.prints is not None and self.logits is not None
        same = (self.prints[sample_ids] == _fingerprints(inputs)).all(1)
        if not bool(same.all()):
            self.changed += int((~same).sum())
            return teacher(inputs)
        return self.logits[sample_ids]

    def _store(self, logits: Tensor, inputs: Tensor, sample_ids: Tensor) -> None:
        capacity = int(sample_ids.max()) + 1
        if self.known is None or self.logits is None or self.prints is None:
            self.known = torch.zeros(capacity, dtype=torch.bool, device=logits.device)
            self.prints = torch.zeros(capacity, 2, dtype=torch.float64, device=logits.device)
            self.logits = logits.new_zeros(capacity, logits.shape[1])
        elif capacity > len(self.known):
            extra = capacity - len(self.known)
            self.known = torch.cat([self.known, self.known.new_zeros(extra)])
            self.prints = torch.cat([self.prints, self.prints.new_zeros(extra, 2)])
            self.logits = torch.cat([self.logits, self.logits.new_zeros(extra, self.logits.shape[1])])
        self.logits[sample_ids] = logits
        self.prints[sample_ids] = _fingerprints(inputs)
        self.known[sample_ids] = True


def _fingerprints(inputs: Tensor) -> Tensor:
    flat = inputs.detach().flatten(1).double()
    return torch.stack([flat.sum(1), flat.pow(2).sum(1)], dim=1)
