"""The few-shot protocol of Maiden & Nakisa (2023): one compound class added to the basic model from K shots.

For each compound class, each method of :mod:`cfer.fewshot.methods` starts from the basic-phase
model and learns one more class from ``K`` images (K in {1, 3, 5, all}) of the basic model's
training subjects. The paper's own method (``paper``) is a copy of the basic model with one more
output unit, trained on the K shots alone with the continual loss ``(1 - g_i) · CE + g_i · KD`` of
:mod:`cfer.core.distillation`, the teacher being the frozen basic model. As the reference
(github.com/AngusMaiden/complex-FER, ``src/models/train.py``, ``fewshot_learning``) the step index
is ``i = 0`` for every class, and the training set is the K shots alone (here ``steps`` batches drawn
from them with replacement; the reference repeats each shot ``batch_size`` times per epoch). Shot
selection is repeated over several seeds; the K-shot sets of one seed are nested (the 1 shot is among
the 3, and so on), and every method sees the same shots.

Two figures, and why they differ
    The reference scores the new model on the held-out images *of the new class only*. That is
    the new class's recall: a model that answers "new class" for every face scores 100% on it, and
    a model trained on nothing but the new class's shots drifts exactly that way. The paper's
    "100% with one shot" is this figure. It is reported here as ``new_class_only_accuracy`` for
    comparability, and beside it the honest one: ``balanced_accuracy`` over the basic classes
    plus the new class, on held-out subjects, together with ``new_class_recall`` (equal to the
    first figure, by construction), ``new_class_precision`` and ``basic_accuracy`` (how much of the
    basic classes survives; compare ``basic_accuracy_before``). Chance balanced accuracy is
    ``1 / (n_basic + 1)``; a model that always predicts the new class scores exactly that.

Held-out subjects are never used to choose anything: training runs a fixed number of steps (the
reference early-stops on the very images it reports).
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    precision_score,
    recall_score,
)
from torch import Tensor
from tqdm.auto import tqdm

from cfer.core.distillation import DistillationLoss, kd_weight
from cfer.data.dataset import FaceExpressionDataset
from cfer.fewshot.features import FeatureSet
from cfer.fewshot.methods import (
    FEWSHOT_METHODS,
    BaseSession,
    PaperConfig,
    create_learner,
    method_config,
)
from cfer.fewshot.stats import mean_ci
from cfer.fewshot.threads import one_thread
from cfer.models.classifier import ExpressionClassifier, freeze_backbone
from cfer.training.augment import AugmentConfig, BatchAugment, make_preprocess

__all__ = [
    "PaperProtocolConfig",
    "evaluate_new_class",
    "learn_new_class",
    "new_class_metrics",
    "run_paper_protocol",
    "select_shots",
]

logger = logging.getLogger(__name__)

METRICS = ("new_class_only_accuracy", "balanced_accuracy", "new_class_recall", "new_class_precision", "basic_accuracy")
"""Per-run figures of the protocol, in report order."""

Samples = FeatureSet | FaceExpressionDataset


@dataclass(frozen=True)
class PaperProtocolConfig:
    """One compound class at a time, added to the basic model from K shots by each method."""

    enabled: bool = True  # run the paper's protocol
    shots: list[int | str] = field(default_factory=lambda: [1, 3, 5, "all"])  # K values; "all": every training image
    seeds: int = 3  # shot selections (and method seeds) per class and K
    classes: list[str] | None = None  # compound classes to add; None: all 15
    # backbone block groups the paper's method trains on images; 0 runs every method on features computed
    # once (fast, no augmentation); the reference trains its last stage (for efficientnet_lite0 about 2
    # groups), which only the 'paper' method can do
    trainable_blocks: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # image augmentation when trainable_blocks > 0


def new_class_metrics(predictions: Tensor, targets: Tensor, new_class: int, basic_classes: Sequence[int]) -> dict[str, float]:
    """The reference's figure and the honest ones, from predictions on held-out images.

    Args:
        predictions: Predicted output indices, shape (N,).
        targets: True output indices, shape (N,), each ``new_class`` or one of ``basic_classes``.
        new_class: Output index of the class just learned.
        basic_classes: Output indices of the basic classes.

    Returns:
        ``new_class_only_accuracy`` (accuracy on the new class's images only: the reference's
        figure), ``balanced_accuracy`` (mean recall over the basic classes and the new class; a
        class absent from ``targets`` is left out), ``new_class_recall``, ``new_class_precision``
        (0 when nothing is predicted as new) and ``basic_accuracy`` (accuracy on the basic
        classes' images).
    """
    y_pred, y_true = predictions.reshape(-1).cpu().numpy(), targets.reshape(-1).cpu().numpy()
    is_new, basic = y_true == new_class, y_true != new_class
    new_recall = float(recall_score(y_true, y_pred, labels=[new_class], average="macro")) if is_new.any() else float("nan")
    with warnings.catch_warnings():
        # a class predicted but absent from the targets has no recall: it is left out, as documented
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        balanced = float(balanced_accuracy_score(y_true, y_pred)) if len(y_true) else float("nan")
    return {
        "new_class_only_accuracy": new_recall,
        "balanced_accuracy": balanced,
        "new_class_recall": new_recall,
        "new_class_precision": float(precision_score(y_true, y_pred, labels=[new_class], average="macro",
                                                     zero_division=0)),
        "basic_accuracy": float(accuracy_score(y_true[basic], y_pred[basic])) if basic.any() else float("nan"),
    }


@torch.no_grad()
def evaluate_new_class(
    logits_of: Callable[[Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    new_class: int,
    basic_classes: Sequence[int],
    batch_size: int = 256,
) -> dict[str, float]:
    """Scores a model on held-out images of the basic classes and the new class.

    Args:
        logits_of: Maps a batch of inputs to logits (batch, n_basic + 1), e.g. the grown head on
            cached features; any callable, so a stub can stand in for a model.
        inputs: Held-out inputs (features or images), first dimension N.
        targets: Output index of each input, shape (N,).
        new_class: Output index of the new class.
        basic_classes: Output indices of the basic classes.
        batch_size: Inputs per call of ``logits_of``.

    Returns:
        :func:`new_class_metrics` of the argmax predictions.
    """
    predictions = torch.cat([logits_of(inputs[i : i + batch_size]).argmax(1).cpu() for i in range(0, len(inputs), batch_size)])
    return new_class_metrics(predictions, targets, new_class, basic_classes)


def select_shots(positions: np.ndarray, shots: int | str, seed: int, class_index: int, base_seed: int = 0) -> np.ndarray:
    """The K training positions of one class for one seed; nested across K for a fixed seed.

    Args:
        positions: Candidate positions of the class's training images, shape (M,).
        shots: K, or ``'all'``.
        seed: Shot-selection seed.
        class_index: Distinguishes the classes' draws.
        base_seed: Run seed.

    Returns:
        Shape (K,) (or (M,) for ``'all'``).

    Raises:
        ValueError: If K exceeds M or ``shots`` is neither a positive int nor ``'all'``.
    """
    order = np.random.default_rng([base_seed, seed, class_index]).permutation(positions)
    if shots == "all":
        return order
    if not isinstance(shots, int) or shots < 1:
        raise ValueError(f"shots must be a positive integer or 'all', got {shots!r}")
    if shots > len(order):
        raise ValueError(f"{shots} shots asked for but the class has only {len(order)} training images")
    return order[:shots]


def learn_new_class(
    teacher: ExpressionClassifier,
    images: Tensor,
    config: PaperConfig,
    seed: int,
    trainable_blocks: int,
    augment: AugmentConfig | None = None,
) -> ExpressionClassifier:
    """The paper's method on images: a copy of ``teacher`` with one more unit, its last blocks trained.

    The same training as :class:`~cfer.fewshot.methods.PaperLearner` (which trains the head on
    cached features), with the backbone's last ``trainable_blocks`` block groups trained too and the
    images augmented, as the reference trains its last stage.

    Args:
        teacher: The basic-phase model; it is not modified (it is the distillation teacher).
        images: The K shots, uint8 (K, 3, H, W).
        config: Steps, learning rate, loss settings.
        seed: Seeds the new unit's initialisation, the batch order, dropout and augmentation.
        trainable_blocks: Backbone block groups trained (at least 1).
        augment: Augmentation of the shots; off if None.

    Returns:
        The grown model, in eval mode; its last output is the new class.

    Raises:
        ValueError: If ``trainable_blocks`` is below 1 (train on features with ``PaperLearner``).
    """
    if trainable_blocks < 1:
        raise ValueError("learn_new_class trains on images with trainable_blocks >= 1; on cached features use the "
                         "'paper' method of cfer.fewshot.methods")
    generator = torch.Generator().manual_seed(seed)
    teacher.eval()
    student = copy.deepcopy(teacher)
    freeze_backbone(student, trainable_blocks)
    student.add_classes(1, generator=generator)
    student.head.requires_grad_(True)
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=config.lr)
    loss_fn = DistillationLoss(config.temperature)
    weight = kd_weight(config.step, config.kd_weight)
    preprocess = make_preprocess(teacher.data_config["mean"], teacher.data_config["std"])
    transform = BatchAugment(augment if augment is not None else AugmentConfig(enabled=False), generator=generator)
    targets = torch.full((config.batch_size,), student.num_classes - 1, dtype=torch.int64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout in the head
        student.train()
        for _ in range(config.steps):
            inputs = transform(preprocess(images[torch.randint(len(images), (config.batch_size,), generator=generator)]))
            with torch.no_grad():
                teacher_logits = teacher(inputs)
            loss = loss_fn(student(inputs), targets, teacher_logits, weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return student.eval()


def run_paper_protocol(
    teacher: ExpressionClassifier,
    teacher_classes: Sequence[str],
    train_pool: Samples,
    held_out: Samples,
    config: PaperProtocolConfig,
    compound_classes: Sequence[str],
    seed: int = 0,
    methods: Sequence[str] = ("paper",),
    method_options: dict[str, dict[str, Any]] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Learns each compound class from K shots with each method, over seeds, and scores every run two ways.

    Args:
        teacher: The basic-phase model; output ``j`` is ``teacher_classes[j]``.
        teacher_classes: Class names of the teacher's outputs.
        train_pool: Where the shots come from (subjects never scored) and the base session's training
            images: a :class:`FeatureSet` of frozen-backbone features when ``config.trainable_blocks == 0``,
            else the images.
        held_out: Images (or features) of held-out subjects, basic and compound classes, of the
            same kind as ``train_pool`` and with the same ``classes``.
        config: The protocol settings.
        compound_classes: Compound classes to add, one at a time (``config.classes`` overrides).
        seed: Run seed.
        methods: Names in :data:`~cfer.fewshot.methods.FEWSHOT_METHODS`; on images only ``'paper'``.
        method_options: Per method, fields of its config.
        progress: Show a progress bar over each method's runs.

    Returns:
        ``{'methods': {name: {'per_shot': {K: {metric: {mean, ci95, n}}}, 'per_class': {class: {K: {metric:
        mean}}}, 'runs', 'basic_accuracy_before', 'description', 'seconds'}}, 'basic_accuracy_before'
        (the basic model's), 'chance_balanced_accuracy', 'shots', 'classes', 'trained_on', 'seconds'}``;
        intervals are over (class, seed) runs.

    Raises:
        ValueError: If the pool and held-out sets differ in kind or classes, a class is missing, or a
            method other than ``'paper'`` is asked to train on images.
    """
    start = time.perf_counter()
    on_features = isinstance(train_pool, FeatureSet)
    if on_features != isinstance(held_out, FeatureSet) or tuple(train_pool.classes) != tuple(held_out.classes):
        raise ValueError("train_pool and held_out must be of the same kind (features or images) with the same classes")
    if not on_features and list(methods) != ["paper"]:
        raise ValueError(f"with paper.trainable_blocks > 0 only the 'paper' method trains (on images); got {list(methods)}")
    names = tuple(held_out.classes)
    classes = list(config.classes) if config.classes is not None else list(compound_classes)
    missing = [c for c in [*teacher_classes, *classes] if c not in names]
    if missing:
        raise ValueError(f"classes {missing} are not in the data (classes: {list(names)})")
    protocol = _Protocol(teacher, teacher_classes, train_pool, held_out, config, seed, method_options or {})
    with one_thread():
        results = {method: protocol.run(method, classes, progress) for method in methods}
    return {
        "shots": [str(s) for s in config.shots],
        "classes": classes,
        "methods": results,
        "basic_accuracy_before": protocol.score_basic(protocol.teacher_logits)["basic_accuracy"],
        "chance_balanced_accuracy": 1.0 / (len(teacher_classes) + 1),
        "trained_on": "cached features" if on_features else f"images ({config.trainable_blocks} block groups)",
        "seconds": time.perf_counter() - start,
    }


class _Protocol:
    """The data of one protocol run, mapped to output indices, and its steps."""

    def __init__(self, teacher: ExpressionClassifier, teacher_classes: Sequence[str], train_pool: Samples,
                 held_out: Samples, config: PaperProtocolConfig, seed: int,
                 method_options: dict[str, dict[str, Any]]) -> None:
        self.teacher, self.config, self.seed, self.options = teacher.eval(), config, seed, method_options
        self.on_features = isinstance(train_pool, FeatureSet)
        self.train_pool, self.held_out = train_pool, held_out
        self.names = tuple(held_out.classes)
        self.new_output = len(teacher_classes)
        self.basic_outputs = list(range(len(teacher_classes)))
        # targets renumbered to output indices: the teacher's order, then the new class
        self.output_of = {self.names.index(c): j for j, c in enumerate(teacher_classes)}
        basic_ids = torch.tensor(list(self.output_of))
        self.is_basic = torch.isin(held_out.targets, basic_ids)
        in_pool = torch.isin(train_pool.targets, basic_ids)
        self.base = self._base_session(teacher, teacher_classes, train_pool.subset(in_pool)) \
            if isinstance(train_pool, FeatureSet) else None

    def _base_session(self, teacher: ExpressionClassifier, teacher_classes: Sequence[str], base: FeatureSet) -> BaseSession:
        return BaseSession(teacher.head, base.features, self._outputs(base.targets), classes=tuple(teacher_classes),
                           au_intensities=base.au_intensities, au_ids=base.au_ids)

    def _outputs(self, targets: Tensor, new_class: int | None = None) -> Tensor:
        return torch.tensor([self.new_output if int(t) == new_class else self.output_of[int(t)] for t in targets],
                            dtype=torch.int64)

    def _inputs(self, samples: Samples) -> Tensor:
        return samples.features if isinstance(samples, FeatureSet) else samples.images

    def teacher_logits(self, inputs: Tensor) -> Tensor:
        if self.on_features:
            return self.teacher.head(inputs)
        preprocess = make_preprocess(self.teacher.data_config["mean"], self.teacher.data_config["std"])
        return self.teacher(preprocess(inputs))

    def score_basic(self, logits_of: Callable[[Tensor], Tensor]) -> dict[str, float]:
        """Scores on the held-out images of the basic classes only."""
        targets = self._outputs(self.held_out.targets[self.is_basic])
        return evaluate_new_class(logits_of, self._inputs(self.held_out)[self.is_basic], targets, self.new_output,
                                  self.basic_outputs)

    def fit(self, method: str, support: Tensor, seed: int, name: str) -> Callable[[Tensor], Tensor]:
        """Learns the new class ``name`` from ``support`` with ``method``; returns the learned model's logits."""
        if self.on_features:
            assert self.base is not None
            learner = create_learner(method, self.base, self.options.get(method), seed=seed)
            learner.learn(support, torch.full((len(support),), self.new_output, dtype=torch.int64), names=[name])
            return learner.logits
        student = learn_new_class(self.teacher, support, method_config("paper", self.options.get("paper")), seed,
                                  self.config.trainable_blocks, self.config.augment)
        preprocess = make_preprocess(student.data_config["mean"], student.data_config["std"])
        return lambda images: student(preprocess(images))

    def run(self, method: str, classes: Sequence[str], progress: bool) -> dict[str, Any]:
        """Every (class, K, seed) run of one method, and their means."""
        start = time.perf_counter()
        config, runs = self.config, []
        before = self.score_basic(create_learner(method, self.base, self.options.get(method)).logits
                                  if self.base is not None else self.teacher_logits)
        total = len(classes) * len(config.shots) * config.seeds
        with tqdm(total=total, desc=f"paper protocol {method}", disable=not progress, leave=False) as bar:
            for class_index, name in enumerate(classes):
                class_id = self.names.index(name)
                mask = self.is_basic | (self.held_out.targets == class_id)
                targets = self._outputs(self.held_out.targets[mask], new_class=class_id)
                inputs = self._inputs(self.held_out)[mask]
                pool = np.flatnonzero(self.train_pool.targets.numpy() == class_id)
                for shots in config.shots:
                    for run_seed in range(config.seeds):
                        chosen = select_shots(pool, shots, run_seed, class_index, base_seed=self.seed)
                        logits_of = self.fit(method, self._inputs(self.train_pool)[torch.as_tensor(chosen)],
                                             seed=self.seed * 10007 + run_seed * 101 + class_index, name=name)
                        metrics = evaluate_new_class(logits_of, inputs, targets, self.new_output, self.basic_outputs)
                        runs.append({"class": name, "shots": str(shots), "seed": run_seed, "n_shots": len(chosen),
                                     **metrics})
                        bar.update()
        return _summarise(method, runs, classes, [str(s) for s in config.shots], before["basic_accuracy"],
                          time.perf_counter() - start)


def _summarise(method: str, runs: list[dict[str, Any]], classes: Sequence[str], shot_keys: list[str],
               basic_before: float, seconds: float) -> dict[str, Any]:
    per_shot = {k: {m: mean_ci([r[m] for r in runs if r["shots"] == k])._asdict() for m in METRICS} for k in shot_keys}
    per_class = {name: {k: {m: float(np.mean([r[m] for r in runs if r["shots"] == k and r["class"] == name]))
                            for m in METRICS} for k in shot_keys} for name in classes}
    for k in shot_keys:
        logger.info("paper protocol %s, K=%s: new-class-only %.3f, balanced %.3f, basic retained %.3f", method, k,
                    per_shot[k]["new_class_only_accuracy"]["mean"], per_shot[k]["balanced_accuracy"]["mean"],
                    per_shot[k]["basic_accuracy"]["mean"])
    return {"description": FEWSHOT_METHODS[method].description, "per_shot": per_shot, "per_class": per_class,
            "runs": runs, "basic_accuracy_before": basic_before, "seconds": seconds}
