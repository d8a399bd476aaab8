"""Avalanche plugins composing the strategy of Maiden & Nakisa (2023).

Thin adapters over :mod:`cfer.core.distillation` and :mod:`strategies.psmr`. Where each one
hooks into Avalanche 0.6's ``BaseSGDTemplate._before_training_exp``, which runs, in order:

1. ``before_train_dataset_adaptation``  -- :class:`DistillationPlugin` snapshots the teacher
   here, while the model still has the previous step's head;
2. ``train_dataset_adaptation`` and ``after_train_dataset_adaptation`` -- :class:`PSMRReplayPlugin`
   replaces ``adapted_dataset`` by memory + new-class samples, :class:`ClassifierExpansionPlugin`
   adds the output units;
3. ``make_train_dataloader``, then ``check_model_and_optimizer``: Avalanche's model adaptation
   (a no-op: the model is no ``DynamicModule``) and ``make_optimizer``, which swaps the grown
   ``head.fc`` parameters into the optimizer (by name, with fresh optimizer state);
4. ``before_training_exp``.

During training :class:`DistillationPlugin` and :class:`HeadL2Plugin` add to ``strategy.loss``
in ``before_backward``; after training :class:`PSMRReplayPlugin` updates the memory in
``after_training_exp`` with the model that has just learned the new class.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from avalanche.benchmarks.utils import AvalancheDataset
from avalanche.core import SupervisedPlugin
from avalanche.models.utils import avalanche_forward
from torch import nn

from cfer.core.distillation import (
    TeacherMemo,
    distillation_loss,
    frozen_copy,
    kd_weight,
)
from cfer.core.inference import predict
from cfer.core.prototypes import ClassMeans, RandomProjectionRidge, align_weights
from cfer.core.sorting import sample_per_class
from cfer.core.trunk import TailClassifier, fingerprint, split_at_frozen
from strategies.psmr import PSMRBuffer

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate

logger = logging.getLogger(__name__)

__all__ = [
    "NEW_CLASS_SAMPLES",
    "TEACHERS",
    "ClassifierExpansionPlugin",
    "DistillationPlugin",
    "ExemplarHeadPlugin",
    "FreshOptimizerPlugin",
    "HeadL2Plugin",
    "NewClassSamples",
    "PSMRReplayPlugin",
    "TeacherMode",
    "TrainingThroughputPlugin",
    "WeightAligningPlugin",
    "batch_sample_ids",
    "grow_to_cover",
    "trained_classes",
]

TeacherMode = Literal["basic", "previous"]
TEACHERS: tuple[str, ...] = ("basic", "previous")
NewClassSamples = Literal["balanced", "all"]
NEW_CLASS_SAMPLES: tuple[str, ...] = ("balanced", "all")


class DistillationPlugin(SupervisedPlugin):
    """Distil a frozen teacher into the model: ``(1 - g_i) * CE + g_i * KD`` at step ``i``.

    Maiden & Nakisa (2023); see :mod:`cfer.core.distillation` for the loss and the schedule.
    Step ``i`` is the index of the training experience minus ``basic_experiences``; no
    distillation happens while ``i < 0`` (the basic phase).

    Args:
        initial_weight: Distillation weight at step 0 (the paper's ``g``).
        temperature: Softmax temperature ``T``.
        teacher: ``'basic'``: the model as it is at the start of step 0, i.e. the basic-phase
            model, kept frozen for the whole stream (the reference); ``'previous'``: the model at
            the start of each step.
        basic_experiences: Number of leading experiences forming the basic phase; 0 when the
            basic model was trained before the stream starts.
        rescale_classification: True gives the paper's ``(1 - g_i) * CE + g_i * KD`` by adding
            ``g_i * (KD - CE)`` to the strategy's cross-entropy loss (which must therefore be the
            strategy criterion); False adds ``g_i * KD`` only.
        memoize: Keep the teacher's logits per sample (:class:`cfer.core.distillation.TeacherMemo`)
            when mini-batches carry sample ids (:func:`batch_sample_ids`), so the teacher runs once
            per sample instead of once per batch. It stops by itself, with a log line, as soon as a
            sample comes back with another input (augmentation); then, when the student's frozen
            trunk is the teacher's (a timm backbone frozen below its trainable groups), the teacher
            reads the student's trunk activations instead of computing its own.

    Raises:
        ValueError: If ``teacher`` is unknown or ``basic_experiences`` is negative.
    """

    def __init__(
        self,
        initial_weight: float = 0.1,
        temperature: float = 3.0,
        teacher: TeacherMode = "basic",
        basic_experiences: int = 1,
        rescale_classification: bool = True,
        memoize: bool = True,
    ) -> None:
        super().__init__()
        if teacher not in TEACHERS:
            raise ValueError(f"unknown teacher {teacher!r}; known teachers: {list(TEACHERS)}")
        if basic_experiences < 0:
            raise ValueError(f"basic_experiences must be >= 0, got {basic_experiences}")
        self.initial_weight = initial_weight
        self.temperature = temperature
        self.teacher_mode: TeacherMode = teacher
        self.basic_experiences = basic_experiences
        self.rescale_classification = rescale_classification
        self.memoize = memoize
        self.memo: TeacherMemo | None = None
        self.teacher: nn.Module | None = None
        self.shared: SharedTrunk | None = None
        """The teacher's tail over the student's trunk activations, once memoising has stopped."""
        self.weight = 0.0
        """Distillation weight ``g_i`` of the current experience."""

    def before_train_dataset_adaptation(
        self, strategy: SupervisedTemplate, **kwargs: Any
    ) -> None:
        # snapshot before any plugin or Avalanche's model adaptation grows the head, so the
        # teacher keeps the previous class count and its logits get zero-padded
        step = strategy.clock.train_exp_counter - self.basic_experiences
        if step < 0:
            self.weight = 0.0
            return
        if self.teacher is None or self.teacher_mode == "previous":
            self.teacher = frozen_copy(strategy.model)
            self.memo = TeacherMemo() if self.memoize else None
            self._release_shared()
        self.weight = kd_weight(step, self.initial_weight)
        logger.info("distillation step %d: weight %.5f", step, self.weight)

    def before_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        # every sample the step can draw (the experience's, and the memory's) gets its teacher logits once
        if self.memo is None or self.teacher is None or self.weight == 0.0:
            return
        for data in (strategy.experience.dataset, strategy.adapted_dataset):
            inputs, sample_ids = _unseen_samples(data.eval(), self.memo)
            if inputs is not None:
                self.memo.fill(self.teacher, inputs.to(strategy.device), sample_ids, strategy.train_mb_size)

    def before_backward(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        if self.teacher is None or self.weight == 0.0:
            return
        teacher_logits = self._teacher_logits(strategy)
        student_logits = strategy.mb_output
        soft = distillation_loss(student_logits, teacher_logits, self.temperature)
        if self.rescale_classification:
            hard = F.cross_entropy(student_logits, strategy.mb_y)
            strategy.loss += self.weight * (soft - hard)
        else:
            strategy.loss += self.weight * soft

    @torch.no_grad()
    def _teacher_logits(self, strategy: SupervisedTemplate) -> torch.Tensor:
        assert self.teacher is not None
        sample_ids = batch_sample_ids(strategy)
        if self.memo is None or sample_ids is None:
            if self.shared is not None and self.shared.captured is not None:
                return self.shared.logits()
            return avalanche_forward(self.teacher, strategy.mb_x, strategy.mb_task_id)
        logits = self.memo(self.teacher, strategy.mb_x, sample_ids)
        if self.memo.changed:
            changed, self.memo, self.memoize = self.memo.changed, None, False
            self.shared = SharedTrunk.attach(strategy.model, self.teacher, strategy.mb_x[:2])
            logger.info("teacher memo off: %d samples came back with other inputs (augmentation); the teacher %s",
                        changed, "reads the student's trunk activations" if self.shared else "runs on every batch")
        return logits

    def _release_shared(self) -> None:
        if self.shared is not None:
            self.shared.release()
        self.shared = None

    def after_training(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        if self.shared is not None:
            self.shared.captured = None


def _unseen_samples(data: AvalancheDataset, memo: TeacherMemo) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The inputs and ids of the samples of ``data`` that ``memo`` has not stored (None if it has them all).

    Items are read one by one rather than through a ``DataLoader``, whose iteration would draw from
    the global random generator and so change the rest of the run.
    """
    if len(data) == 0 or len(data[0]) != 4:
        return None, torch.empty(0, dtype=torch.long)
    sample_ids = torch.as_tensor(list(data.sample_id), dtype=torch.long)
    positions = memo.missing(sample_ids).nonzero().flatten().tolist()
    if not positions:
        return None, sample_ids[:0]
    return torch.stack([data[position][0] for position in positions]), sample_ids[positions]


class SharedTrunk:
    """The teacher's tail run on the activations the student's identical frozen trunk just computed.

    Built by :meth:`attach`, which checks that the two trunks hold the same weights; a forward hook on
    the student's last trunk module keeps its output of the current mini-batch.
    """

    def __init__(self, teacher_tail: nn.Module, hook: torch.utils.hooks.RemovableHandle) -> None:
        self.teacher_tail = teacher_tail
        self.hook = hook
        self.captured: torch.Tensor | None = None

    @classmethod
    def attach(cls, student: nn.Module, teacher: nn.Module, example: torch.Tensor) -> SharedTrunk | None:
        """Share the student's trunk with the teacher, or None when they cannot (no timm backbone,
        different trunk weights, nothing frozen)."""
        try:
            student_split = split_at_frozen(student.backbone, example)
            teacher_split = student_split.apply_to(teacher.backbone)
        except (AttributeError, ValueError, TypeError):
            return None
        if not student_split.trunk_units or fingerprint(student_split.trunk) != fingerprint(teacher_split.trunk):
            return None
        last = student.backbone.get_submodule(student_split.trunk_units[-1])
        shared = cls(TailClassifier(teacher_split.tail, teacher.head), None)  # type: ignore[arg-type]
        shared.hook = last.register_forward_hook(shared._keep)
        return shared

    def _keep(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        self.captured = output.detach()

    def logits(self) -> torch.Tensor:
        """The teacher's logits of the mini-batch the student has just seen."""
        assert self.captured is not None
        return self.teacher_tail(self.captured)

    def release(self) -> None:
        """Remove the hook."""
        self.hook.remove()


def batch_sample_ids(strategy: SupervisedTemplate) -> torch.Tensor | None:
    """Sample ids of the current mini-batch, when its items are ``(x, y, sample_id, task)``.

    ``cfer.continual.benchmark`` builds its datasets so; a plain Avalanche dataset yields
    ``(x, y, task)`` and gets None.
    """
    batch = strategy.mbatch
    return batch[2] if batch is not None and len(batch) == 4 else None


class ClassifierExpansionPlugin(SupervisedPlugin):
    """Add one output unit per new class before training each experience.

    Works with any model exposing ``num_classes`` and ``add_classes`` (see
    :class:`strategies.protocols.GrowingClassifier`). It grows the model before Avalanche's
    ``make_optimizer`` runs, so the optimizer receives the new parameters. Labels index output
    units: when they are numbered in order of arrival (class_order 0, 1, 2, ...), covering the
    largest label trained on adds one unit per new class.
    """

    def after_train_dataset_adaptation(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        grow_to_cover(strategy.model, trained_classes(strategy))


def trained_classes(strategy: SupervisedTemplate) -> int:
    """Number of output units the data of the current training experience needs.

    The experience's own classes, or more when a strategy trains on a replay memory or on the
    whole stream at once (joint training).
    """
    largest = max(strategy.experience.classes_in_this_experience)
    if strategy.adapted_dataset is not None:
        largest = max(largest, max(strategy.adapted_dataset.targets.uniques))
    return int(largest) + 1


def grow_to_cover(model: nn.Module, num_classes: int) -> None:
    """Add output units to a :class:`~strategies.protocols.GrowingClassifier` until it has ``num_classes``."""
    if num_classes > model.num_classes:
        model.add_classes(num_classes - model.num_classes)


class HeadL2Plugin(SupervisedPlugin):
    """Add the model's L2 penalty (its optional ``l2_penalty()``) to the loss.

    The reference regularises the hidden kernels of its head in the basic phase only (its
    continual ``train_step`` ignores ``model.losses``), hence the default. A model without an
    ``l2_penalty`` member (see :class:`strategies.protocols.GrowingClassifier`) gets no penalty.

    Args:
        basic_experiences: Apply the penalty during the first ``basic_experiences`` experiences
            only; None applies it throughout.
    """

    def __init__(self, basic_experiences: int | None = 1) -> None:
        super().__init__()
        self.basic_experiences = basic_experiences

    def before_backward(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        if (
            self.basic_experiences is not None
            and strategy.clock.train_exp_counter >= self.basic_experiences
        ):
            return
        penalty = getattr(strategy.model, "l2_penalty", None)
        if penalty is not None:
            strategy.loss += penalty()


class PSMRReplayPlugin(SupervisedPlugin):
    """Train each incremental step on the PSMR memory plus the new class's samples.

    As in the reference, the memory and the new samples are concatenated into one dataset that
    the strategy's ordinary data loader shuffles. (Avalanche's ``ReplayPlugin`` instead pairs
    every new-data mini-batch with an equally large memory mini-batch, which would give a single
    new class half of every batch.) The first experience (empty memory) trains on all its data.

    Args:
        storage_policy: The memory; updated after every experience.
        new_class_samples: ``'balanced'``: each class of the experience contributes
            ``storage_policy.memory_per_class`` random samples, as many as each class in memory
            (the reference); ``'all'``: all of its samples.
        resample_each_epoch: With ``'balanced'``, draw a new random subset of the new class every
            epoch, as the reference's ``shuffle().take(m)`` pipeline does; this rebuilds the
            train data loader at each epoch.
        generator: Random generator of the subsets; the global one if None.

    Raises:
        ValueError: If ``new_class_samples`` is unknown.
    """

    def __init__(
        self,
        storage_policy: PSMRBuffer,
        new_class_samples: NewClassSamples = "balanced",
        resample_each_epoch: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if new_class_samples not in NEW_CLASS_SAMPLES:
            raise ValueError(
                f"unknown new_class_samples {new_class_samples!r}; "
                f"known: {list(NEW_CLASS_SAMPLES)}"
            )
        self.storage_policy = storage_policy
        self.new_class_samples: NewClassSamples = new_class_samples
        self.resample_each_epoch = resample_each_epoch
        self.generator = generator
        self._experience_data: AvalancheDataset | None = None

    def after_train_dataset_adaptation(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        if len(self.storage_policy.buffer) == 0:
            self._experience_data = None
            return
        self._experience_data = strategy.adapted_dataset
        strategy.adapted_dataset = self._training_dataset()

    def before_training_epoch(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        if (
            self._experience_data is None
            or self.new_class_samples == "all"
            or not self.resample_each_epoch
            or strategy.clock.train_exp_epochs == 0  # drawn at dataset adaptation already
        ):
            return
        strategy.adapted_dataset = self._training_dataset()
        strategy.make_train_dataloader(**kwargs)

    def after_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        self.storage_policy.post_adapt(strategy, strategy.experience)
        self._experience_data = None

    def _training_dataset(self) -> AvalancheDataset:
        assert self._experience_data is not None
        current = self._experience_data
        if self.new_class_samples == "balanced":
            targets = torch.as_tensor(list(current.targets))
            kept = sample_per_class(targets, self.storage_policy.memory_per_class, self.generator)
            current = current.subset(kept.tolist())
        return self.storage_policy.buffer.concat(current).train()


class TrainingThroughputPlugin(SupervisedPlugin):
    """Time spent in training epochs and images trained, per experience: the cost per trained image.

    The clock runs from ``before_training_epoch`` to ``after_training_epoch``; put this plugin
    first, so that it includes what other plugins do at the start of an epoch (e.g. a new replay
    subset) and leaves out what they do after it (e.g. a validation pass).
    """

    def __init__(self) -> None:
        super().__init__()
        self.images = 0
        """Images trained on in the current experience (over all its epochs)."""
        self.seconds = 0.0
        """Seconds spent in its training epochs."""
        self._started = 0.0

    def before_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        self.images, self.seconds = 0, 0.0

    def before_training_epoch(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        self._started = time.perf_counter()

    def after_training_iteration(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        self.images += len(strategy.mb_y)

    def after_training_epoch(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        self.seconds += time.perf_counter() - self._started


class WeightAligningPlugin(SupervisedPlugin):
    """Weight aligning after each incremental step (Zhao et al. 2020): new classes' output weights
    rescaled to the old ones' mean norm, against the bias of a step toward its own class.

    Put it before the memory update (PSMR ranks the new class with the aligned head).
    """

    def __init__(self) -> None:
        super().__init__()
        self.factors: list[float] = []
        """The factor applied after each experience."""

    def after_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        new = len(strategy.experience.classes_in_this_experience)
        layer = strategy.model.head.fc
        if strategy.train_epochs == 0 or new >= layer.out_features:
            return
        self.factors.append(align_weights(layer, new))


class ExemplarHeadPlugin(SupervisedPlugin):
    """Classify by a head fitted to the memory's exemplars when evaluating.

    After each experience (and the memory update) the stored exemplars go through the trained
    backbone once, and a statistics head is fitted to their features: their class means (iCaRL's
    nearest-mean rule on PSMR's memory) or RanPAC's random-projection ridge head (its ``λ`` chosen on
    held-out exemplars). ``strategy.eval`` then scores with that head; training, validation early
    stopping and PSMR's ranking keep using the linear head.

    Args:
        storage_policy: The memory (its ``buffer``).
        kind: ``'means'`` or ``'ridge'``.
    """

    def __init__(self, storage_policy: PSMRBuffer, kind: Literal["means", "ridge"] = "means") -> None:
        super().__init__()
        self.storage_policy = storage_policy
        self.kind = kind
        self.head: ClassMeans | RandomProjectionRidge | None = None
        self._trained: nn.Module | None = None

    @torch.no_grad()
    def after_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        buffer = self.storage_policy.buffer.eval()
        features = predict(strategy.model.backbone, buffer, strategy.eval_mb_size, strategy.device,
                           out_device=strategy.device)
        labels = torch.as_tensor(list(buffer.targets), device=strategy.device)
        if self.kind == "means":
            self.head = ClassMeans(features.shape[1]).to(strategy.device)
            self.head.update(features, labels)
        else:
            self.head = RandomProjectionRidge(features.shape[1]).to(strategy.device)
            self.head.update(features, labels, solve=False)
            self.head.choose_ridge(features, labels)  # solves

    def before_eval(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        if self.head is not None:
            self._trained = strategy.model
            strategy.model = _HeadView(strategy.model.backbone, self.head)

    def after_eval(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        if self._trained is not None:
            strategy.model, self._trained = self._trained, None


class _HeadView(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(inputs))


class FreshOptimizerPlugin(SupervisedPlugin):
    """Start every experience with fresh optimizer state (Adam's moments), as the reference does."""

    def before_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        strategy.optimizer.state.clear()
