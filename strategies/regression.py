"""Keeping valence/arousal through the stream: the teacher-bounded regression loss as an Avalanche plugin.

A thin adapter over :func:`cfer.core.kd.teacher_bounded_loss` (Chen et al., NeurIPS 2017, as Lee, Kim
& Lee 2023 use it for valence/arousal): while a strategy adds compound classes, the model's
regressor keeps learning (valence, arousal) from the training samples, and is held to the frozen
basic-phase model wherever it does worse than it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from avalanche.core import SupervisedPlugin
from torch import Tensor, nn

from cfer.core.distillation import TeacherMemo
from cfer.core.kd import teacher_bounded_loss
from strategies.plugins import batch_sample_ids

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate

logger = logging.getLogger(__name__)

__all__ = ["BoundedRegressionPlugin"]


class BoundedRegressionPlugin(SupervisedPlugin):
    """Adds ``weight · (SmoothL1(R_s, y) + ν · L_b)`` for the model's regression outputs to the loss.

    ``L_b = ‖R_s − y‖²`` where ``‖R_s − y‖² + m > ‖R_t − y‖²`` and 0 elsewhere, the teacher ``R_t``
    being the frozen basic-phase model (see :func:`cfer.core.kd.teacher_bounded_loss`). The student's
    outputs come from its pooled features of the mini-batch, kept by a forward hook on
    ``strategy.model.backbone``, so the tail runs once per batch; the teacher's are computed once per
    sample (:class:`cfer.core.distillation.TeacherMemo`, which recomputes a sample whose input changed).
    Mini-batches must carry sample ids (``cfer.continual.benchmark`` builds them so): a sample's
    target is ``targets[sample_id]``.

    Args:
        teacher: The frozen basic-phase model as the strategy sees it, with ``regress``.
        targets: (valence, arousal) of every training sample by sample id, shape ``(n_train, 2)``;
            rows with a NaN add nothing.
        weight: Weight of the regression term beside the strategy's own loss.
        margin: ``m``.
        nu: Weight ``ν`` of the bounded term.

    Raises:
        ValueError: If ``targets`` is not ``(n, d)`` or ``weight`` is negative.
    """

    def __init__(self, teacher: nn.Module, targets: Tensor, weight: float = 1.0, margin: float = 0.0,
                 nu: float = 0.5) -> None:
        super().__init__()
        if targets.ndim != 2:
            raise ValueError(f"targets must have shape (n_train, outputs), got {tuple(targets.shape)}")
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self.teacher = teacher
        self.targets = targets.float()
        self.weight, self.margin, self.nu = weight, margin, nu
        self.memo = TeacherMemo()
        self.features: Tensor | None = None
        self._hooked: nn.Module | None = None
        self._hook: torch.utils.hooks.RemovableHandle | None = None
        self.last_loss = 0.0
        """The regression term of the last mini-batch, before ``weight``."""

    def before_training(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        self.teacher.to(strategy.device)
        self.targets = self.targets.to(strategy.device)

    def before_forward(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        backbone = strategy.model.backbone
        if backbone is not self._hooked:  # GDumb trains a fresh copy of the model at every experience
            self._release()
            self._hook = backbone.register_forward_hook(self._keep)
            self._hooked = backbone

    def before_backward(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        if self.weight == 0.0 or self.features is None:
            return
        sample_ids = batch_sample_ids(strategy)
        if sample_ids is None:
            raise RuntimeError("BoundedRegressionPlugin needs mini-batches (x, y, sample_id, task): build the "
                               "stream with cfer.continual.benchmark.build_benchmark")
        student = strategy.model.regressor(self.features)
        teacher = self.memo(self.teacher.regress, strategy.mb_x, sample_ids)
        loss = teacher_bounded_loss(student, teacher, self.targets[sample_ids.to(self.targets.device)],
                                    self.margin, self.nu)
        self.last_loss = float(loss.detach())
        strategy.loss += self.weight * loss

    def after_training(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        self._release()
        self.features = None

    def _keep(self, module: nn.Module, inputs: Any, output: Tensor) -> None:
        self.features = output

    def _release(self) -> None:
        if self._hook is not None:
            self._hook.remove()
        self._hook, self._hooked = None, None
