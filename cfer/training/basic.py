"""The basic phase: fine-tune an ImageNet CNN on the basic expressions, with subject-wise CV.

Maiden & Nakisa (2023) train in two stages (the head with the backbone frozen, then the upper
blocks at a lower learning rate), early-stop on the validation loss, cross-validate over 10
subject-wise folds and carry the best fold's model into the continual phase as backbone and
distillation teacher. Here each fold keeps three disjoint subject sets: ``train``, ``val`` (early
stopping and fold selection) and ``test`` (the fold's held-out subjects, which are reported and never
used to select anything). The reference selects on the split it reports; this does not.

A model built with ``model.regression_outputs=2`` also learns valence and arousal: once both stages
have trained the classes, its regressor (a linear layer and tanh on the pooled features) is fitted
to the images' (valence, arousal) with SmoothL1 on the fixed features, early-stopped on the
validation subjects, and scored on the test subjects (RMSE, PCC, CCC, SAGR); the continual phase
then keeps it with the teacher-bounded loss (:class:`strategies.BoundedRegressionPlugin`). The
classes are trained exactly as without it.

With ``au_weight > 0`` an action-unit head (:class:`cfer.core.action_units.ActionUnitHead`) learns
each AU's presence from the data's AU labels (the synthetic faces' intensities, RAF-CE's AU lists,
CFEE's annotations). It is fitted on the head stage's features, then trained beside the classes in
the fine-tuning stage, where ``au_weight · BCE`` also shapes the upper blocks. The test subjects'
per-AU F1 is reported (``test.action_units``); the saved model is the classifier alone.

A run directory holds, per fold, ``fold_<k>/model.safetensors``, ``metrics.json``,
``confusion_matrix.png`` and ``curves.png``; at the top, ``config.yaml`` (the resolved config),
``model.safetensors`` (the selected fold's model) and ``metrics.json`` (all folds). Every file is
written atomically, and ``fold_<k>/state.pt`` (written after each epoch) lets an interrupted run
resume where it stopped when started again with the same directory.

Under ``torchrun`` (see :mod:`cfer.distributed.ranks`) every rank runs the same fold: the training
stages with DistributedDataParallel, each rank on its share of every global batch of ``batch_size``;
the passes without gradients (features, cached activations, validation, test) split by rows and
gathered, so that early stopping decides the same on every rank; the head stage on cached features
(a few small matrix products) on every rank alike. Rank 0 alone writes the run directory and sends
the others what they need of it (a resume state, a finished fold).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from cfer.config import check_resumable, save_config
from cfer.core.action_units import ActionUnitHead, au_detection_scores, au_presence_loss
from cfer.core.early_stopping import EarlyStopping
from cfer.core.head_training import fit_head
from cfer.core.inference import predict
from cfer.core.kd import masked_smooth_l1
from cfer.core.trunk import (
    FeatureCache,
    FeatureCacheConfig,
    TailClassifier,
    cache_decision,
    split_backbone,
)
from cfer.data.dataset import FaceExpressionDataset
from cfer.data.reading import write_skipped
from cfer.data.sources import DataConfig, load_dataset
from cfer.data.splits import SubjectSplit, assign_splits, split_indices, split_policy
from cfer.distributed.ranks import Ranks, current_ranks
from cfer.io import atomic_write, load_torch_file, read_json, write_json
from cfer.models.checkpoint import load_checkpoint, save_checkpoint
from cfer.models.classifier import ModelConfig, create_model, freeze_backbone
from cfer.reports import affect_metrics, classification_metrics, plot_confusion_matrix, plot_curves
from cfer.taxonomy import BASIC, NEUTRAL
from cfer.training.augment import AugmentConfig, BatchAugment, make_preprocess
from cfer.training.loop import AuxiliaryTask, Trainer, make_loader, resolve_device

__all__ = ["BasicPhaseConfig", "basic_classes", "load_basic_model", "run_basic_phase"]

logger = logging.getLogger(__name__)

_STAGES = ("head", "finetune")


@dataclass(frozen=True)
class BasicPhaseConfig:
    """Settings of ``cfer train-basic``; defaults follow the paper where the CPU budget allows."""

    data: DataConfig = field(default_factory=DataConfig)  # the images
    model: ModelConfig = field(default_factory=ModelConfig)  # backbone, weights and head
    # Off by default: the synthetic renderer already draws pose, scale, shift and light per image,
    # and the head stage trains on unaugmented cached features. configs/basic_cfee.yaml turns the
    # paper's augmentation on for real, aligned photos.
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(enabled=False))
    include_neutral: bool = False  # the paper leaves neutral out of the basic classes
    folds: int = 10  # subject-wise cross-validation folds, as in the paper
    fold: int | None = None  # run this fold only; None runs every fold
    val_fraction: float = 0.15  # share of each fold's training subjects kept for early stopping
    # the fold carried on: by validation accuracy, or (the reference code's way) by the test accuracy it reports
    select_fold_on: Literal["val", "test"] = "val"
    seed: int = 0  # splits, initialisation and augmentation
    batch_size: int = 32  # images per step
    head_epochs: int = 30  # stage 1: epochs with the backbone frozen
    head_lr: float = 3e-3  # stage 1 learning rate (Adam)
    head_on_cached_features: bool = True  # stage 1 trains on features computed once, unaugmented
    feature_cache: FeatureCacheConfig = field(default_factory=FeatureCacheConfig)  # stage 2's frozen trunk, once
    finetune_epochs: int = 10  # stage 2: epochs with the upper blocks trainable
    finetune_lr: float = 2e-4  # stage 2 learning rate (Adam), lower as in the paper
    patience: int = 4  # epochs without a lower validation loss before a stage stops
    regression_epochs: int = 60  # valence/arousal regressor epochs on the final features (model.regression_outputs > 0)
    regression_lr: float = 3e-4  # its learning rate (Adam)
    # λ of an action-unit head trained beside the classes while fine-tuning (BCE on each AU's presence); 0: none
    au_weight: float = 0.0
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda[:k]"
    progress: bool = True  # progress bars


def basic_classes(config: BasicPhaseConfig) -> tuple[str, ...]:
    """The classes of the basic phase: the 6 basic expressions, and neutral if asked for."""
    return ((NEUTRAL,) if config.include_neutral else ()) + BASIC


def run_basic_phase(config: BasicPhaseConfig, out_dir: str | Path, dataset: FaceExpressionDataset | None = None) -> dict:
    """Trains and evaluates the basic phase, resuming whatever a previous run left in ``out_dir``.

    Args:
        config: The settings.
        out_dir: The run directory.
        dataset: Optional dataset to use instead of loading ``config.data`` (its classes must be
            the basic classes).

    Returns:
        The run summary that is also written to ``out_dir/metrics.json`` (on every rank under ``torchrun``).
    """
    if config.fold is not None and not 0 <= config.fold < config.folds:
        raise ValueError(f"fold must be in [0, {config.folds}), got {config.fold}")
    ranks = current_ranks()
    out_dir = Path(out_dir)
    if ranks.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        check_resumable(config, out_dir, may_change=("fold", "progress", "device"))
    classes = basic_classes(config)
    start = time.perf_counter()
    dataset = load_dataset(config.data, classes) if dataset is None else dataset.select_classes(classes)
    _check_classes(dataset, config)
    _check_regression(dataset, config)
    _check_action_units(dataset, config, ranks)
    policy = split_policy(dataset, config.data.split)
    if ranks.main:
        write_skipped(dataset.skipped, out_dir)
        save_config(config, out_dir / "config.yaml")  # once the data is read: a run refused for its data is no run
    logger.info("basic phase on %d images of %s, classes %s; %s split", len(dataset),
                f"{len(dataset.subjects())} subjects" if dataset.subjects_known else "unknown subjects", classes,
                _POLICY_TEXT[policy])
    folds = range(config.folds) if config.fold is None else [config.fold]
    if policy == "official":
        folds = [0]  # one official train/test split, one fold
    for fold in folds:
        _run_fold(config, dataset, fold, out_dir / f"fold_{fold}", ranks)
    return ranks.broadcast(_summarize(config, classes, out_dir, start) if ranks.main else None)


def _summarize(config: BasicPhaseConfig, classes: tuple[str, ...], out_dir: Path, start: float) -> dict:
    """Selects the fold carried on, copies its model to the top, and writes ``metrics.json``."""
    # Folds may be run one at a time (--fold k); the summary covers every finished fold of the run.
    results = [read_json(path) for k in range(config.folds) if (path := out_dir / f"fold_{k}" / "metrics.json").exists()]

    # Select on validation accuracy, never on the test accuracy that is reported (unless asked to, as the
    # reference does).
    best = max(results, key=lambda r: (r["val_accuracy"] if config.select_fold_on == "val" else r["test"]["accuracy"],
                                       -r["fold"]))
    with open(out_dir / f"fold_{best['fold']}" / "model.safetensors", "rb") as chosen:
        atomic_write(out_dir / "model.safetensors", lambda file: shutil.copyfileobj(chosen, file))
    accuracies = [r["test"]["accuracy"] for r in results]
    summary = {
        "classes": list(classes),
        "folds": [{k: r[k] for k in ("fold", "val_accuracy", "epochs", "seconds")} | {"test_accuracy": r["test"]["accuracy"]}
                  for r in results],
        "test_accuracy_mean": float(np.mean(accuracies)),
        "test_accuracy_std": float(np.std(accuracies)),
        "best_fold": best["fold"],
        "selected_on": "test subjects (select_fold_on=test: the reported test accuracy chose the fold)"
        if config.select_fold_on == "test" else "validation subjects",
        "best_fold_test": best["test"],
        "chance": 1.0 / len(classes),
        "wall_seconds": time.perf_counter() - start,
        "model": "model.safetensors",
    }
    write_json(out_dir / "metrics.json", summary)
    return summary


_POLICY_TEXT = {"official": "the dataset's official train/test", "subject": "subject-wise",
                "image": "image-wise (data.split=image: a person may be on both sides)"}


def _check_classes(dataset: FaceExpressionDataset, config: BasicPhaseConfig) -> None:
    empty = [name for name, count in dataset.class_counts().items() if count == 0]
    if empty:
        raise ValueError(f"the basic phase needs images of every basic class, and {config.data.source} at "
                         f"{config.data.root} has none of {empty}; add them, or use another data.source")


def _check_regression(dataset: FaceExpressionDataset, config: BasicPhaseConfig) -> None:
    if config.model.regression_outputs and dataset.valence_arousal is None:
        raise ValueError(f"model.regression_outputs={config.model.regression_outputs} needs (valence, arousal) per "
                         f"image, and {config.data.source} at {config.data.root} has none; set "
                         "model.regression_outputs=0, or use data with valence/arousal (the synthetic source has them)")


def _check_action_units(dataset: FaceExpressionDataset, config: BasicPhaseConfig, ranks: Ranks) -> None:
    if config.au_weight < 0:
        raise ValueError(f"au_weight must be at least 0, got {config.au_weight}")
    if config.au_weight > 0 and dataset.au_intensities is None:
        raise ValueError(f"au_weight={config.au_weight} needs action-unit labels per image, and {config.data.source} "
                         f"at {config.data.root} has none; set basic.au_weight=0, or use data with AU labels (the "
                         "synthetic source, RAF-CE, or CFEE with AU_annotation_all_subjects.xls)")
    if config.au_weight > 0 and ranks.distributed:
        raise ValueError("au_weight > 0 is not trained under torchrun; run in one process, or set basic.au_weight=0")


def load_basic_model(run_dir: str | Path):
    """Loads the selected model of a finished basic-phase run.

    Returns:
        ``(model, metadata)`` as :func:`cfer.models.classifier.load_checkpoint` gives them; the
        metadata holds the class names in output order.

    Raises:
        FileNotFoundError: If the run has not finished.
    """
    path = Path(run_dir) / "model.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `cfer train-basic --out {run_dir}` first (it resumes if interrupted)")
    return load_checkpoint(path)


def _run_fold(config: BasicPhaseConfig, dataset: FaceExpressionDataset, fold: int, fold_dir: Path,
              ranks: Ranks) -> dict:
    """Trains, evaluates and saves one fold; resumes from ``fold_dir/state.pt``; reuses a finished fold."""
    done = fold_dir / "metrics.json"
    finished = ranks.broadcast(read_json(done) if ranks.main and done.exists() else None)
    if finished is not None:
        logger.info("fold %d already finished; reusing %s", fold, done)
        return finished
    if ranks.main:
        fold_dir.mkdir(parents=True, exist_ok=True)
    fold_start = time.perf_counter()
    split = split_indices(assign_splits(dataset, fold, config.folds, config.val_fraction, config.seed,
                                        config.data.split))
    train, val, test = (dataset.subset(indices) for indices in split)
    trainer, generator = _fold_trainer(config, len(dataset.classes), fold, ranks)
    au_head = (ActionUnitHead(trainer.model.feature_dim, dataset.au_ids).to(trainer.device)
               if config.au_weight > 0 else None)
    progress = _FoldProgress(fold_dir / "state.pt", generator, ranks, au_head)
    # One stopper across both stages: fine-tuning must beat the head stage's best loss to count.
    stopper = EarlyStopping(config.patience)
    for stage in range(len(_STAGES)):
        if progress.finished(stage):
            continue
        _train_stage(config, trainer, stage, train, val, stopper, progress, fold, au_head)
        stopper.restore(trainer.model)
    if trainer.model.regressor is not None:
        _fit_regressor(trainer, train, val, config, progress.generator)
    result = _evaluate_fold(trainer, dataset, split, (val, test), fold, fold_dir)
    if au_head is not None:
        result["test"]["action_units"] = _score_action_units(trainer, au_head, test)
    result.update(seconds=time.perf_counter() - fold_start, history=progress.history,
                  train_images_per_second=float(np.median(progress.throughput)) if progress.throughput else 0.0,
                  epochs=len(progress.history["train_loss"]))
    if ranks.main:
        plot_curves(progress.history, fold_dir / "curves.png", title=f"fold {fold}")
        write_json(done, result)
        progress.discard()
    return result


def _fold_trainer(config: BasicPhaseConfig, num_classes: int, fold: int,
                  ranks: Ranks) -> tuple[Trainer, torch.Generator]:
    """The fold's model and trainer, seeded by fold; the generator drives shuffling and augmentation."""
    torch.manual_seed(config.seed * 1000 + fold)
    generator = torch.Generator().manual_seed(config.seed * 1000 + fold)
    model = create_model(config.model, num_classes=num_classes)
    trainer = Trainer(
        model,
        preprocess=make_preprocess(model.data_config["mean"], model.data_config["std"]),
        augment=BatchAugment(config.augment, generator=generator),
        device=resolve_device(config.device),
        regularizer=_head_l2,
        progress=config.progress,
        ranks=ranks,
    )
    return trainer, generator


def _train_stage(config: BasicPhaseConfig, trainer: Trainer, stage: int, train: FaceExpressionDataset,
                 val: FaceExpressionDataset, stopper: EarlyStopping, progress: _FoldProgress, fold: int,
                 au_head: ActionUnitHead | None = None) -> None:
    """One stage: the head with the backbone frozen (0), or the upper blocks too (1); resumable by epoch.

    An AU head trains in the fine-tuning stage only, beside the classes.
    """
    epochs, lr, trainable_blocks = _stage_settings(config, stage)
    freeze_backbone(trainer.model, trainable_blocks, train_batchnorm=config.model.train_batchnorm)
    au_head = au_head if stage == 1 else None
    parameters = [p for p in trainer.model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters + ([] if au_head is None else list(au_head.parameters())), lr=lr)
    stopper.epochs_without_improvement = 0
    first_epoch = progress.restore(stage, trainer.model, optimizer, stopper, epochs)
    if au_head is not None and first_epoch == 0:
        _fit_au_head(trainer, au_head, train, val, config, progress.generator)
    if stage == 0 and config.head_on_cached_features and first_epoch < epochs:
        # A frozen backbone in eval mode maps each image to fixed features, so stage 1 needs
        # one backbone pass instead of one per epoch; the price is no augmentation in stage 1.
        _fit_head_on_features(trainer, train, val, optimizer, stopper, epochs, config, progress)
        return
    auxiliary = None if au_head is None else AuxiliaryTask(au_head, au_presence_loss, config.au_weight)
    stage_trainer, (train_inputs, val_inputs) = _stage_trainer(config, trainer, trainable_blocks, train, val, auxiliary)
    train_loader = make_loader(train, config.batch_size, shuffle=True, device=trainer.device,
                               generator=progress.generator, inputs=train_inputs,
                               extra=None if au_head is None else train.au_intensities)
    val_loader = make_loader(val, 256, shuffle=False, device=trainer.device, inputs=val_inputs)
    for epoch in range(first_epoch, epochs):
        description = f"fold {fold} {_STAGES[stage]} {epoch + 1}/{epochs}"
        stats = stage_trainer.train_epoch(train_loader, optimizer, description)
        evaluation = stage_trainer.evaluate(val_loader, "val")
        progress.record(stats.loss, stats.accuracy, evaluation.loss, evaluation.accuracy, stats.images_per_second)
        logger.info("fold %d %s epoch %d: train loss %.3f acc %.3f | val loss %.3f acc %.3f | %.0f img/s",
                    fold, _STAGES[stage], epoch + 1, stats.loss, stats.accuracy, evaluation.loss,
                    evaluation.accuracy, stats.images_per_second)
        stopped = stopper.step(evaluation.loss, trainer.model, epoch)
        progress.save(stage, epoch, stopped, trainer.model, optimizer, stopper)
        if stopped:
            break


def _stage_trainer(config: BasicPhaseConfig, trainer: Trainer, trainable_blocks: int, train: FaceExpressionDataset,
                   val: FaceExpressionDataset, auxiliary: AuxiliaryTask | None = None
                   ) -> tuple[Trainer, tuple[torch.Tensor | None, torch.Tensor | None]]:
    """The trainer of the fine-tuning stage, and the inputs it reads instead of the images, if any.

    Without augmentation the frozen blocks map each image to the same activations every epoch, so
    they run once (:class:`cfer.core.trunk.FeatureCache`) and the stage trains the rest of the model
    on their activations; the model's modules are shared, so it is the full model that learns.
    """
    cached, reason = cache_decision(config.feature_cache, config.augment.enabled)
    trainer.auxiliary = auxiliary
    if not cached or trainable_blocks == 0:
        logger.info("fine-tuning on images: %s", reason if not cached else "the whole backbone is frozen")
        return trainer, (None, None)
    model = trainer.model
    example = trainer.inputs(train.images[:2], train=False)
    try:
        split = split_backbone(model.backbone, trainable_blocks, example)
    except ValueError as error:
        if config.feature_cache.mode == "always":
            raise
        logger.info("fine-tuning on images: %s", error)
        return trainer, (None, None)
    dtype = torch.float16 if config.feature_cache.dtype == "float16" else torch.float32
    ranks = trainer.ranks
    # the ranks compute a block of rows each; a disk cache would have every rank write the same file
    directory = config.feature_cache.directory if not ranks.distributed else None
    caches = [FeatureCache.build(split, d.images, lambda images: trainer.inputs(images, train=False),
                                 repr(trainer.preprocess), 256, trainer.device, dtype, directory,
                                 map_rows=ranks.map_rows if ranks.distributed else None)
              for d in (train, val)]
    logger.info("fine-tuning on cached activations (%s): %s; %s", reason, split.describe(), caches[0].describe())
    student = Trainer(TailClassifier(split.tail, model.head), preprocess=_as_float32, device=trainer.device,
                      regularizer=_head_l2, progress=config.progress, ranks=ranks, auxiliary=auxiliary)
    return student, (caches[0].activations, caches[1].activations)


def _as_float32(inputs: torch.Tensor) -> torch.Tensor:
    return inputs.float()


def _stage_settings(config: BasicPhaseConfig, stage: int) -> tuple[int, float, int]:
    """``(epochs, learning rate, trainable block groups)`` of a stage."""
    if stage == 0:
        return config.head_epochs, config.head_lr, 0
    return config.finetune_epochs, config.finetune_lr, config.model.trainable_blocks


def _evaluate_fold(trainer: Trainer, dataset: FaceExpressionDataset, split: SubjectSplit,
                   sets: tuple[FaceExpressionDataset, FaceExpressionDataset], fold: int, fold_dir: Path) -> dict:
    """Scores the fold's kept model on validation and test, saves it and its confusion matrix."""
    val, test = sets
    test_eval = trainer.evaluate(make_loader(test, 256, shuffle=False, device=trainer.device), "test")
    val_eval = trainer.evaluate(make_loader(val, 256, shuffle=False, device=trainer.device), "val")
    test_metrics = classification_metrics(test_eval.targets, test_eval.predictions, dataset.classes)
    if trainer.model.regressor is not None:
        test_metrics["affect"] = affect_metrics(_regress(trainer, test).numpy(), test.valence_arousal.numpy())
    if trainer.ranks.main:
        save_checkpoint(trainer.model.cpu(), fold_dir / "model.safetensors",
                        {"classes": list(dataset.classes), "phase": "basic", "fold": fold})
        plot_confusion_matrix(test_metrics["confusion_matrix"], dataset.classes, fold_dir / "confusion_matrix.png",
                              title=f"fold {fold}: test accuracy {test_metrics['accuracy']:.3f}")
    return {
        "fold": fold,
        "val_accuracy": val_eval.accuracy,
        "test": test_metrics,
        "subjects": {name: sorted(set(dataset.subject_ids[idx].tolist())) for name, idx in split._asdict().items()},
    }


class _FoldProgress:
    """A fold's training history and its resume file (``state.pt``, written after each epoch).

    Args:
        path: The resume file; read now if it exists (by rank 0, which sends it to the others).
        generator: The fold's generator (shuffling, augmentation); its state is saved and restored.
        ranks: The processes training the fold; rank 0 alone writes the file.
    """

    def __init__(self, path: Path, generator: torch.Generator, ranks: Ranks = Ranks(),
                 au_head: torch.nn.Module | None = None) -> None:
        self.path = path
        self.generator = generator
        self.ranks = ranks
        self.au_head = au_head  # saved and restored beside the model
        self.history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "train_accuracy": [],
                                                "val_accuracy": []}
        self.throughput: list[float] = []
        self.saved: dict[str, Any] | None = ranks.broadcast(
            load_torch_file(path, "delete it to train this fold from its start") if ranks.main and path.exists()
            else None)
        if self.saved is not None:
            logger.info("%s: resuming at stage %s, epoch %d", path.parent, _STAGES[self.saved["stage"]],
                        self.saved["epoch"] + 1)
            self.history, self.throughput = self.saved["history"], self.saved["throughput"]

    def finished(self, stage: int) -> bool:
        """Whether a resumed run had already finished ``stage``."""
        return self.saved is not None and stage < self.saved["stage"]

    def restore(self, stage: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                stopper: EarlyStopping, epochs: int) -> int:
        """Puts the saved state of ``stage`` back (if the run stopped in it); returns the first epoch to run."""
        saved, self.saved = self.saved, None
        if saved is None or stage != saved["stage"]:
            return 0
        model.load_state_dict(saved["model"])
        if self.au_head is not None and saved.get("au_head") is not None:
            self.au_head.load_state_dict(saved["au_head"])
        optimizer.load_state_dict(saved["optimizer"])
        stopper.load_state_dict(saved["early_stopping"])
        torch.set_rng_state(saved["torch_rng"])
        self.generator.set_state(saved["generator"])
        return epochs if saved["stopped"] else saved["epoch"] + 1

    def record(self, train_loss: float, train_accuracy: float, val_loss: float, val_accuracy: float,
               images_per_second: float | None = None) -> None:
        """Appends one epoch to the history."""
        for key, value in zip(("train_loss", "train_accuracy", "val_loss", "val_accuracy"),
                              (train_loss, train_accuracy, val_loss, val_accuracy)):
            self.history[key].append(value)
        if images_per_second is not None:
            self.throughput.append(images_per_second)

    def save(self, stage: int, epoch: int, stopped: bool, model: torch.nn.Module,
             optimizer: torch.optim.Optimizer, stopper: EarlyStopping) -> None:
        """Writes the resume file (atomically) after an epoch (rank 0; the ranks hold the same state)."""
        if not self.ranks.main:
            return
        state = {
            "stage": stage,
            "epoch": epoch,
            "stopped": stopped,
            "model": model.state_dict(),
            "au_head": None if self.au_head is None else self.au_head.state_dict(),
            "optimizer": optimizer.state_dict(),
            "early_stopping": stopper.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "generator": self.generator.get_state(),
            "history": self.history,
            "throughput": self.throughput,
        }
        atomic_write(self.path, lambda file: torch.save(state, file))

    def discard(self) -> None:
        """Removes the resume file (the fold has finished)."""
        self.path.unlink(missing_ok=True)


def _fit_head_on_features(trainer: Trainer, train: FaceExpressionDataset, val: FaceExpressionDataset,
                          optimizer: torch.optim.Optimizer, stopper: EarlyStopping, epochs: int,
                          config: BasicPhaseConfig, progress: _FoldProgress) -> None:
    model = trainer.model
    train_features, val_features = (_features(trainer, d) for d in (train, val))
    train_targets, val_targets = train.targets.to(trainer.device), val.targets.to(trainer.device)
    # The head's steps are tiny matrix products: on the CPU, thread synchronisation would cost more
    # than it saves (and much more on a busy machine), so they run on one thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        history = fit_head(model.head, train_features, train_targets, optimizer, epochs,
                           batch_size=config.batch_size, generator=progress.generator,
                           penalty=lambda: _head_l2(model), validation=(val_features, val_targets),
                           stopper=stopper, snapshot=model)
    finally:
        torch.set_num_threads(threads)
    for record in history:
        progress.record(record["train_loss"], record["train_accuracy"], record["val_loss"], record["val_accuracy"])
    logger.info("head stage on cached features: %d epochs, best val loss %.3f (epoch %d)",
                len(history), stopper.best_loss, stopper.best_epoch + 1)


def _features(trainer: Trainer, dataset: FaceExpressionDataset) -> torch.Tensor:
    trainer.model.eval()
    # Through a DataLoader, as since the first release: iterating one draws its base seed from the
    # global generator, which the head's dropout then continues from (on every rank alike).
    def features(rows: slice) -> torch.Tensor:
        images = torch.utils.data.TensorDataset(dataset.images[rows])
        return predict(trainer.model.features, images, batch_size=256, device=trainer.device,
                       preprocess=lambda batch: trainer.inputs(batch, train=False), out_device=None)

    return trainer.ranks.map_rows(features, len(dataset))


def _fit_regressor(trainer: Trainer, train: FaceExpressionDataset, val: FaceExpressionDataset,
                   config: BasicPhaseConfig, generator: torch.Generator) -> None:
    """Fits the valence/arousal regressor on the trained backbone's features (SmoothL1, early-stopped on val)."""
    regressor = trainer.model.regressor
    train_features, val_features = (_features(trainer, d) for d in (train, val))
    targets = [d.valence_arousal.to(trainer.device) for d in (train, val)]
    # Start from the mean predictor (zero weights, the training mean as bias): on a thousand features a
    # random start saturates the tanh at once, and early stopping can then only improve on the mean.
    with torch.no_grad():
        layer = regressor[0]
        layer.weight.zero_()
        layer.bias.copy_(torch.atanh(targets[0].nanmean(0).clamp(-0.95, 0.95)))
    optimizer = torch.optim.Adam(regressor.parameters(), lr=config.regression_lr)
    stopper = EarlyStopping(config.patience)
    history = fit_head(regressor, train_features, targets[0], optimizer, config.regression_epochs,
                       batch_size=config.batch_size, generator=generator, validation=(val_features, targets[1]),
                       stopper=stopper, criterion=masked_smooth_l1)
    stopper.restore(regressor)
    logger.info("valence/arousal regressor: %d epochs, best val SmoothL1 %.4f", len(history), stopper.best_loss)


def _fit_au_head(trainer: Trainer, au_head: ActionUnitHead, train: FaceExpressionDataset,
                 val: FaceExpressionDataset, config: BasicPhaseConfig, generator: torch.Generator) -> None:
    """Fits the AU head on the head stage's features (BCE, early-stopped on val), before it trains beside the classes."""
    train_features, val_features = (_features(trainer, d) for d in (train, val))
    targets = [d.au_intensities.to(trainer.device) for d in (train, val)]
    optimizer = torch.optim.Adam(au_head.parameters(), lr=config.head_lr)
    stopper = EarlyStopping(config.patience)
    history = fit_head(au_head, train_features, targets[0], optimizer, config.head_epochs, batch_size=config.batch_size,
                       generator=generator, validation=(val_features, targets[1]), stopper=stopper,
                       criterion=au_presence_loss)
    stopper.restore(au_head)
    logger.info("action-unit head on the head stage's features: %d epochs, best val BCE %.4f", len(history),
                stopper.best_loss)


@torch.no_grad()
def _score_action_units(trainer: Trainer, au_head: ActionUnitHead, test: FaceExpressionDataset) -> dict:
    """The AU head's per-AU F1 on the test subjects (see :func:`cfer.core.action_units.au_detection_scores`)."""
    au_head.eval()
    probabilities = au_head(_features(trainer, test).to(trainer.device)).sigmoid().cpu().numpy()
    scores = au_detection_scores(probabilities, test.au_intensities.numpy(), au_head.au_ids)
    logger.info("action units on the test subjects: mean F1 %.3f (saying every AU is present: %.3f)",
                scores["mean_f1"] or float("nan"), scores["mean_always_present_f1"] or float("nan"))
    return scores


@torch.no_grad()
def _regress(trainer: Trainer, dataset: FaceExpressionDataset) -> torch.Tensor:
    """The model's (valence, arousal) of every image, shape (N, 2), on the CPU."""
    return trainer.model.regressor(_features(trainer, dataset)).cpu()


def _head_l2(model: torch.nn.Module) -> torch.Tensor:
    """The paper's L2 (1e-5) on the head's hidden layers, during the basic phase."""
    return model.head.l2_penalty()
