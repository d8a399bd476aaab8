"""``cfer distill``: an ensemble of teachers on classes and valence/arousal, distilled into a light student.

:func:`run_distillation` splits the images as the basic phase does (subject-wise, or a dataset's
official split), trains every teacher of ``teachers`` (each a multi-task
:class:`~cfer.models.classifier.ExpressionClassifier` with two bounded outputs), averages them into
the ensemble, then trains each student of ``students`` (see :data:`cfer.distill.config.STUDENT_KINDS`)
from the teachers' outputs, which are computed once. Every network trains its last block groups on
activations of its frozen trunk computed once (:class:`cfer.core.trunk.FeatureCache`), with early
stopping on the validation subjects, and is scored on the test subjects.

Layout of ``out_dir``::

    config.yaml                   the resolved settings
    teachers/<k>/model.safetensors, metrics.json     one per member (reused when finished)
    students/<kind>/model.safetensors, metrics.json  one per student kind (reused when finished)
    results.json, results.md, accuracy_vs_macs.png

Under ``torchrun`` (see :mod:`cfer.distributed.ranks`) the ranks train each network together with
DistributedDataParallel, each on its share of every global batch of ``batch_size``, its frozen trunk's
activations computed a block of rows per rank; rank 0 alone writes ``out_dir`` and decides early
stopping, and sends the others a finished network's weights.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import Tensor, nn
from tqdm.auto import tqdm

from cfer.config import check_resumable, save_config
from cfer.core.distillation import soft_cross_entropy
from cfer.core.early_stopping import EarlyStopping
from cfer.core.kd import (
    ensemble_probabilities,
    ensemble_soft_labels,
    hinton_kd_loss,
    masked_smooth_l1,
    teacher_bounded_loss,
)
from cfer.core.trunk import FeatureCache, split_backbone
from cfer.data.dataset import FaceExpressionDataset
from cfer.data.reading import write_skipped
from cfer.data.sources import load_dataset
from cfer.data.splits import assign_splits, split_indices
from cfer.distill.config import STUDENT_KINDS, DistillConfig, MemberSpec
from cfer.distill.metrics import affect_metrics, model_cost
from cfer.distill.reports import write_distill_reports
from cfer.distributed.ranks import Ranks, current_ranks
from cfer.io import read_json, write_json
from cfer.models.checkpoint import load_checkpoint, save_checkpoint
from cfer.models.classifier import (
    ExpressionClassifier,
    ModelConfig,
    create_model,
    freeze_backbone,
)
from cfer.taxonomy import BASIC, NEUTRAL
from cfer.training.augment import make_preprocess
from cfer.training.loop import resolve_device

__all__ = ["Outputs", "run_distillation"]

logger = logging.getLogger(__name__)

LossFn = Callable[[Tensor, Tensor, Tensor], Tensor]  # (logits, affect, rows) -> loss


@dataclass
class Outputs:
    """A trained network's logits (N, C) and valence/arousal (N, 2) on every image, in dataset order."""

    logits: Tensor
    affect: Tensor


class _MultiTaskTail(nn.Module):
    """The trainable tail of a backbone with the class head and the regressor, over cached activations."""

    def __init__(self, tail: nn.Module, model: ExpressionClassifier) -> None:
        super().__init__()
        self.tail, self.head, self.regressor = tail, model.head, model.regressor

    def forward(self, activations: Tensor) -> tuple[Tensor, Tensor]:
        features = self.tail(activations)
        return self.head(features), self.regressor(features)


def run_distillation(config: DistillConfig, out_dir: str | Path) -> dict[str, Any]:
    """Trains the teachers and the students, scores them, and writes the reports; resumes.

    Returns:
        The summary also written to ``out_dir/results.json``: per model (teachers, ``ensemble``,
        students) accuracy, macro-F1, valence/arousal metrics and cost; and the headline figures.

    Raises:
        ValueError: If a student kind is unknown, or the data has no valence/arousal.
    """
    unknown = sorted(set(config.students) - set(STUDENT_KINDS))
    if unknown:
        raise ValueError(f"unknown student kind(s) {unknown}; valid kinds are {list(STUDENT_KINDS)}")
    out_dir = Path(out_dir)
    start = time.perf_counter()
    classes = ((NEUTRAL,) if config.include_neutral else ()) + BASIC
    dataset = load_dataset(config.data, classes)
    if dataset.valence_arousal is None:
        raise ValueError(f"{config.data.source} gives no valence/arousal; cfer distill needs them (a CSV manifest "
                         "with valence and arousal columns, or the synthetic faces)")
    if current_ranks().main:
        out_dir.mkdir(parents=True, exist_ok=True)
        check_resumable(config, out_dir, may_change=("students", "device", "progress"))
        write_skipped(dataset.skipped, out_dir)
        save_config(config, out_dir / "config.yaml")
    split = split_indices(assign_splits(dataset, config.fold, config.folds, config.val_fraction, config.seed,
                                        config.data.split))
    device = resolve_device(config.device)
    teachers = [_network(config, dataset, split, spec, _supervised(config, dataset), out_dir / "teachers" / str(k),
                         device) for k, spec in enumerate(config.teachers)]
    names = [f"teacher {k} ({spec.backbone} @ {spec.size})" for k, spec in enumerate(config.teachers)]
    for path in config.teacher_checkpoints:
        teachers.append(_checkpoint_teacher(Path(path), dataset, split, device))
        names.append(f"teacher {len(names)} ({Path(path).parent.name}/{Path(path).name})")
    if not teachers:
        raise ValueError("no teacher: set teachers, or teacher_checkpoints to finished multi-task checkpoints")
    results = dict(zip(names, (record for record, _ in teachers)))
    ensemble = _ensemble(config, [outputs for _, outputs in teachers])
    results["ensemble"] = _ensemble_record(dataset, split, ensemble, [record for record, _ in teachers])
    best = max(range(len(teachers)), key=lambda k: teachers[k][0]["val_accuracy"])
    for kind in config.students:
        loss = _student_loss(config, dataset, kind, teachers[best][1], ensemble, [o for _, o in teachers])
        results[f"student {kind}"], _ = _network(config, dataset, split, config.student, loss,
                                                 out_dir / "students" / kind, device, keep_outputs=False)
    summary = {"classes": list(classes), "results": results, "best_teacher": list(results)[best],
               "images": {name: len(rows) for name, rows in split._asdict().items()},
               "wall_seconds": time.perf_counter() - start}
    summary["headline"] = _headline(summary)
    if current_ranks().main:
        write_distill_reports(summary, out_dir)
    return summary


def _network(config: DistillConfig, dataset: FaceExpressionDataset, split: Any, spec: MemberSpec, loss: LossFn,
             directory: Path, device: torch.device,
             keep_outputs: bool = True) -> tuple[dict[str, Any], Outputs | None]:
    """Trains (or reloads) one network; returns its record and (if asked) its outputs on every image.

    A finished network whose outputs are not needed (a student) is not run again at all.
    """
    ranks = current_ranks()
    done = directory / "metrics.json"
    finished = ranks.broadcast(read_json(done) if ranks.main and done.exists() else None)
    if finished is not None and not keep_outputs:
        return finished, None
    torch.manual_seed(config.seed)
    model = create_model(ModelConfig(backbone=spec.backbone, pretrained=spec.pretrained, head="linear",
                                     regression_outputs=2, dropout=spec.dropout), len(dataset.classes)).to(device)
    freeze_backbone(model, spec.trainable_blocks)
    preprocess = _preprocess(model, spec.size)
    cut = split_backbone(model.backbone, spec.trainable_blocks, preprocess(dataset.images[:2]).to(device))
    cache = FeatureCache.build(cut, dataset.images, preprocess, f"{spec}", 128, device,
                               map_rows=ranks.map_rows if ranks.distributed else None)
    tail = _MultiTaskTail(cut.tail, model).to(device)
    if finished is not None:
        weights = load_checkpoint(directory / "model.safetensors")[0].state_dict() if ranks.main else None
        model.load_state_dict(ranks.broadcast(weights))
    else:
        _fit(config, spec.lr, tail, cache, split, loss, device, description=directory.name, ranks=ranks)
    outputs = _outputs(tail, cache, device)
    if finished is not None:
        return finished, outputs
    # timed by rank 0 alone, while the others wait: not against the others' timing runs
    cost = ranks.broadcast(model_cost(model, spec.size) if ranks.main else None)
    record = _score(dataset, split, outputs) | {"cost": cost, "spec": vars(spec)}
    if ranks.main:
        save_checkpoint(model.cpu(), directory / "model.safetensors", {"classes": list(dataset.classes),
                                                                     "phase": "distill", "name": directory.name,
                                                                     "size": spec.size})
        model.to(device)
        write_json(done, record)
    return record, outputs


def _checkpoint_teacher(path: Path, dataset: FaceExpressionDataset, split: Any,
                        device: torch.device) -> tuple[dict[str, Any], Outputs]:
    """A finished multi-task checkpoint as an ensemble member: its outputs on every image, its scores and cost."""
    model, metadata = load_checkpoint(path, device)
    if model.regressor is None:
        raise ValueError(f"teacher checkpoint {path} has no valence/arousal outputs; cfer distill needs multi-task "
                         "teachers (e.g. the teachers/<k>/model.safetensors of an earlier cfer distill run)")
    if list(metadata.get("classes", [])) != list(dataset.classes):
        raise ValueError(f"teacher checkpoint {path} predicts {metadata.get('classes')}, not {list(dataset.classes)}")
    size = int(metadata.get("size", dataset.image_size[0]))
    preprocess = _preprocess(model, size)
    logits, affect = [], []
    with torch.inference_mode():
        for images in dataset.images.split(128):
            batch_logits, batch_affect = model.forward_multitask(preprocess(images).to(device))
            logits.append(batch_logits.cpu())
            affect.append(batch_affect.cpu())
    outputs = Outputs(torch.cat(logits), torch.cat(affect))
    record = _score(dataset, split, outputs) | {"cost": model_cost(model, size), "checkpoint": str(path)}
    return record, outputs


def _preprocess(model: ExpressionClassifier, size: int) -> Callable[[Tensor], Tensor]:
    normalise = make_preprocess(model.data_config["mean"], model.data_config["std"])

    def preprocess(images: Tensor) -> Tensor:
        resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True,
                                align_corners=False).round().clamp(0, 255).to(torch.uint8)
        return normalise(resized)

    return preprocess


def _fit(config: DistillConfig, lr: float, tail: _MultiTaskTail, cache: FeatureCache, split: Any, loss: LossFn,
         device: torch.device, description: str, ranks: Ranks = Ranks()) -> None:
    """Adam on the tail over cached activations, early-stopped on the validation images' loss.

    Every rank draws the same global batches; each trains on its share (DDP averages the gradients),
    and rank 0's validation loss decides when to stop.
    """
    optimizer = torch.optim.Adam([p for p in tail.parameters() if p.requires_grad], lr=lr)
    stopper = EarlyStopping(config.patience)
    generator = torch.Generator().manual_seed(config.seed)
    train, val = torch.as_tensor(split.train), torch.as_tensor(split.val)
    network = ranks.wrap(tail)
    for epoch in tqdm(range(config.epochs), desc=description, disable=not config.progress, leave=False):
        tail.train()
        for rows in train[torch.randperm(len(train), generator=generator)].split(config.batch_size):
            share, factor = ranks.shard(len(rows))  # one process: every row, factor 1
            logits, affect = network(cache[rows[share]].float().to(device))
            optimizer.zero_grad()
            (factor * loss(logits, affect, rows[share])).backward()
            optimizer.step()
        tail.eval()
        with torch.no_grad():
            logits, affect = tail(cache[val].float().to(device))
            if stopper.step(ranks.broadcast(float(loss(logits, affect, val))), tail, epoch):
                break
    stopper.restore(tail)


def _outputs(tail: _MultiTaskTail, cache: FeatureCache, device: torch.device) -> Outputs:
    tail.eval()
    logits, affect = [], []
    with torch.no_grad():
        for rows in torch.arange(len(cache)).split(256):
            batch_logits, batch_affect = tail(cache[rows].float().to(device))
            logits.append(batch_logits.cpu())
            affect.append(batch_affect.cpu())
    return Outputs(torch.cat(logits), torch.cat(affect))


# --- losses ------------------------------------------------------------------------------------------


def _supervised(config: DistillConfig, dataset: FaceExpressionDataset) -> LossFn:
    """Cross-entropy on the classes plus SmoothL1 on valence/arousal: the teachers' and the no-KD student's."""
    targets, affect_targets = dataset.targets, dataset.valence_arousal

    def loss(logits: Tensor, affect: Tensor, rows: Tensor) -> Tensor:
        classes = F.cross_entropy(logits, targets[rows].to(logits.device))
        return classes + config.regression_weight * masked_smooth_l1(affect, affect_targets[rows].to(affect.device))

    return loss


def _student_loss(config: DistillConfig, dataset: FaceExpressionDataset, kind: str, best: Outputs,
                  ensemble: Outputs, members: list[Outputs]) -> LossFn:
    if kind == "no-kd":
        return _supervised(config, dataset)
    targets, affect_targets = dataset.targets, dataset.valence_arousal
    soft = ensemble_soft_labels([m.logits for m in members], targets, config.epsilon, config.average)

    def loss(logits: Tensor, affect: Tensor, rows: Tensor) -> Tensor:
        y, y_affect = targets[rows].to(logits.device), affect_targets[rows].to(affect.device)
        if kind == "ensemble":
            classes = soft_cross_entropy(soft[rows].to(logits.device), logits)
            bound = teacher_bounded_loss(affect, ensemble.affect[rows].to(affect.device), y_affect, config.margin,
                                         config.nu)
            return classes + config.regression_weight * bound
        classes = hinton_kd_loss(logits, best.logits[rows].to(logits.device), y, config.alpha, config.temperature)
        if kind == "kd":
            return classes + config.regression_weight * masked_smooth_l1(affect, y_affect)
        return classes + config.regression_weight * teacher_bounded_loss(
            affect, best.affect[rows].to(affect.device), y_affect, config.margin, config.nu)

    return loss


# --- scores ------------------------------------------------------------------------------------------


def _ensemble(config: DistillConfig, members: list[Outputs]) -> Outputs:
    """The members averaged: the log of the ensemble's distribution as logits, the mean valence/arousal."""
    probabilities = ensemble_probabilities([m.logits for m in members], config.average)
    return Outputs(torch.log(probabilities.clamp_min(1e-12)), torch.stack([m.affect for m in members]).mean(0))


def _score(dataset: FaceExpressionDataset, split: Any, outputs: Outputs) -> dict[str, Any]:
    test = torch.as_tensor(split.test)
    targets, predictions = dataset.targets[test].numpy(), outputs.logits[test].argmax(1).numpy()
    macro_f1 = f1_score(targets, predictions, average="macro", labels=range(len(dataset.classes)), zero_division=0)
    val = torch.as_tensor(split.val)
    val_accuracy = float((outputs.logits[val].argmax(1) == dataset.targets[val]).float().mean())
    return {"accuracy": float((targets == predictions).mean()), "macro_f1": float(macro_f1),
            "val_accuracy": val_accuracy,
            "affect": affect_metrics(outputs.affect[test].numpy(), dataset.valence_arousal[test].numpy())}


def _ensemble_record(dataset: FaceExpressionDataset, split: Any, ensemble: Outputs,
                     members: list[dict[str, Any]]) -> dict[str, Any]:
    costs = [member["cost"] for member in members]
    cost = {"parameters": sum(c["parameters"] for c in costs), "macs": sum(c["macs"] for c in costs),
            "latency_ms": sum(c["latency_ms"] for c in costs),
            "images_per_second": 1.0 / sum(1.0 / c["images_per_second"] for c in costs)}
    return _score(dataset, split, ensemble) | {"cost": cost}


def _headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The seeds' figures: compute ratio teacher/student and the accuracy kept, per student."""
    results = summary["results"]
    headline = {}
    for teacher_name in (summary["best_teacher"], "ensemble"):
        teacher = results[teacher_name]
        for name, record in results.items():
            if name.startswith("student"):
                headline[f"{name} vs {teacher_name}"] = {
                    "compute_ratio": teacher["cost"]["macs"] / record["cost"]["macs"],
                    "accuracy_kept": record["accuracy"] / teacher["accuracy"] if teacher["accuracy"] else 0.0,
                    "accuracy_drop": teacher["accuracy"] - record["accuracy"],
                }
    return headline

