"""A lean supervised training loop over in-memory uint8 datasets, with early stopping.

The basic phase and the few-shot protocol train through :class:`Trainer`; the continual phase
trains through Avalanche strategies instead. On CUDA the loop uses pinned memory, automatic mixed
precision and channels_last; on the CPU it stays in float32. Under ``torchrun`` a trainer given the
launch's :class:`~cfer.distributed.Ranks` trains with DistributedDataParallel, each rank on its share
of every global batch, and evaluates each rank on its share of every batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from cfer.data.dataset import FaceExpressionDataset
from cfer.distributed.ranks import Ranks

__all__ = ["AuxiliaryTask", "EpochStats", "Evaluation", "Trainer", "make_loader", "resolve_device"]


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def make_loader(
    dataset: FaceExpressionDataset,
    batch_size: int,
    shuffle: bool,
    device: torch.device,
    generator: torch.Generator | None = None,
    num_workers: int = 0,
    inputs: Tensor | None = None,
    extra: Tensor | None = None,
) -> DataLoader:
    """Batches of (uint8 images, targets), or of (images, targets, extra targets), from an in-memory dataset.

    The images are already decoded, so a batch is one gather from a tensor: worker processes would
    only add inter-process copies, and both cores are better spent on the model's own threads. Hence
    ``num_workers=0`` by default; on CUDA, batches come from pinned memory.

    Args:
        dataset: The images and targets.
        batch_size: Samples per batch.
        shuffle: Draw a new order every epoch (from ``generator``).
        device: Where the batches go (pinned memory for CUDA).
        generator: Random generator of the order.
        num_workers: Loader processes.
        inputs: Batches of these rows instead of the images (e.g. cached trunk activations).
        extra: A third tensor of per-sample rows (an :class:`AuxiliaryTask`'s targets).
    """
    source = dataset.images if inputs is None else inputs
    return DataLoader(
        TensorDataset(source, dataset.targets, *(() if extra is None else (extra,))),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        pin_memory=device.type == "cuda" and not source.is_cuda,
        drop_last=False,
    )


@dataclass
class EpochStats:
    """What one training epoch did."""

    loss: float
    accuracy: float
    images: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)


@dataclass
class Evaluation:
    """Loss, accuracy and per-sample results on a labelled set."""

    loss: float
    accuracy: float
    predictions: Tensor  # (N,) predicted class indices
    targets: Tensor  # (N,) true class indices
    probabilities: Tensor = field(repr=False)  # (N, num_classes) softmax outputs


@dataclass(frozen=True)
class AuxiliaryTask:
    """A second loss on the pooled features, beside the classes: ``weight · criterion(head(features), extra)``.

    The loader then yields a third tensor per batch, the task's targets (see :func:`make_loader`).
    """

    head: nn.Module  # pooled features (batch, D) -> outputs
    criterion: Callable[[Tensor, Tensor], Tensor]  # (outputs, targets) -> scalar
    weight: float


class Trainer:
    """Runs training epochs and evaluations of a classifier on uint8 batches.

    Args:
        model: The classifier; it is moved to ``device``.
        preprocess: Turns a uint8 (B, 3, H, W) batch into the model's normalised float input.
        augment: Optional random augmentation of the preprocessed training batches.
        device: Where to compute.
        amp: Mixed precision; defaults to on exactly when the device is CUDA.
        regularizer: Optional callable returning an extra loss term for the model (e.g. L2 on the head).
        progress: Show progress bars.
        ranks: The processes sharing each batch (one by default); every rank must make the same calls.
        auxiliary: A second loss on the model's pooled features (``model.backbone`` then ``model.head``);
            not under ``torchrun``.

    Raises:
        ValueError: If an auxiliary task is given to a distributed trainer.
    """

    def __init__(
        self,
        model: nn.Module,
        preprocess: Callable[[Tensor], Tensor],
        augment: nn.Module | None = None,
        device: torch.device | str = "cpu",
        amp: bool | None = None,
        regularizer: Callable[[nn.Module], Tensor] | None = None,
        progress: bool = True,
        ranks: Ranks = Ranks(),
        auxiliary: AuxiliaryTask | None = None,
    ) -> None:
        if auxiliary is not None and ranks.distributed:
            raise ValueError("an auxiliary head (basic.au_weight) is not trained under torchrun; run in one process, "
                             "or set basic.au_weight=0")
        self.auxiliary = auxiliary
        self.device = torch.device(device)
        self.model = model.to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.preprocess = preprocess
        self.augment = augment
        self.amp = self.device.type == "cuda" if amp is None else amp
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp and self.device.type == "cuda")
        self.regularizer = regularizer
        self.progress = progress
        self.ranks = ranks
        self._wrapped: tuple[tuple[bool, ...], nn.Module] | None = None

    def inputs(self, images: Tensor, train: bool) -> Tensor:
        """Moves a uint8 batch to the device and preprocesses it (and augments it, when training)."""
        images = images.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        images = self.preprocess(images)
        if train and self.augment is not None:
            images = self.augment(images)
        return images

    def train_epoch(self, loader: DataLoader, optimizer: torch.optim.Optimizer, description: str = "train") -> EpochStats:
        """One pass over ``loader``, updating the model (each rank on its share of every batch)."""
        self.model.train()
        network = self._network()
        total_loss, correct, seen = 0.0, 0, 0
        start = time.perf_counter()
        for images, targets, *extra in self._bar(loader, description):
            inputs = self.inputs(images, train=True)  # the whole batch: the augmentation draws as in one process
            targets = targets.to(self.device, non_blocking=True)
            factor = None
            if self.ranks.distributed:
                rows, factor = self.ranks.shard(len(targets))
                inputs, targets = inputs[rows.to(self.device)], targets[rows.to(self.device)]
            with torch.autocast(self.device.type, enabled=self.amp):
                logits, auxiliary = self._forward(network, inputs, extra)
                classification = nn.functional.cross_entropy(logits, targets)
                penalty = self.regularizer(self.model) if self.regularizer is not None else None
                loss = classification if penalty is None else classification + penalty
                # the rank's share of the global batch's mean; DDP averages the ranks' gradients
                objective = loss if factor is None else factor * classification + (0.0 if penalty is None else penalty)
                objective = objective if auxiliary is None else objective + auxiliary
            optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(objective).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
            if factor != 0.0:  # a rank without rows of this batch trained on a stand-in row, weighted 0
                total_loss += loss.detach().float().item() * len(targets)
                correct += int((logits.detach().argmax(1) == targets).sum())
                seen += len(targets)
        total_loss, correct, seen = self.ranks.all_sum([total_loss, correct, seen])
        return EpochStats(total_loss / max(seen, 1), correct / max(seen, 1), int(seen), time.perf_counter() - start)

    def _forward(self, network: nn.Module, inputs: Tensor, extra: list[Tensor]) -> tuple[Tensor, Tensor | None]:
        """Logits ``(batch, classes)`` and the auxiliary task's weighted loss (None without one)."""
        if self.auxiliary is None:
            return network(inputs), None
        features = self.model.backbone(inputs)
        task = self.auxiliary
        loss = task.criterion(task.head(features), extra[0].to(self.device, non_blocking=True))
        return self.model.head(features), task.weight * loss

    def _network(self) -> nn.Module:
        """What the forward pass goes through: the model, or its DDP wrapper for the current trainable set."""
        if not self.ranks.distributed:
            return self.model
        trainable = tuple(parameter.requires_grad for parameter in self.model.parameters())
        if self._wrapped is None or self._wrapped[0] != trainable:  # a new stage trains other parameters
            # the class loss leaves the regressor of a multi-task model without a gradient
            unused = getattr(self.model, "regressor", None) is not None
            self._wrapped = (trainable, self.ranks.wrap(self.model, find_unused_parameters=unused))
        return self._wrapped[1]

    @torch.no_grad()
    def evaluate(self, loader: DataLoader, description: str = "eval") -> Evaluation:
        """Loss and predictions on ``loader`` with the model in eval mode (every rank gets all of them)."""
        self.model.eval()
        losses, probabilities, all_targets = [], [], []
        for images, targets in self._bar(loader, description):
            if self.ranks.distributed:
                rows = torch.arange(len(targets)).tensor_split(self.ranks.world_size)[self.ranks.rank]
                images, targets = images[rows], targets[rows]
            targets = targets.to(self.device)
            with torch.autocast(self.device.type, enabled=self.amp):
                logits = self.model(self.inputs(images, train=False)).float()
            losses.append(nn.functional.cross_entropy(logits, targets, reduction="sum").item() if len(targets) else 0.0)
            probabilities.append(logits.softmax(1).cpu())
            all_targets.append(targets.cpu())
        if self.ranks.distributed:  # every batch's blocks, in rank order: the rows in loader order
            gathered = self.ranks.gather((losses, probabilities, all_targets))
            losses = [sum(rank[0][k] for rank in gathered) for k in range(len(losses))]
            probabilities = [rank[1][k] for k in range(len(probabilities)) for rank in gathered]
            all_targets = [rank[2][k] for k in range(len(all_targets)) for rank in gathered]
        probabilities_tensor = torch.cat(probabilities)
        targets_tensor = torch.cat(all_targets)
        predictions = probabilities_tensor.argmax(1)
        return Evaluation(
            loss=sum(losses) / max(len(targets_tensor), 1),
            accuracy=float((predictions == targets_tensor).float().mean()) if len(targets_tensor) else 0.0,
            predictions=predictions,
            targets=targets_tensor,
            probabilities=probabilities_tensor,
        )

    def _bar(self, loader: DataLoader, description: str) -> Iterator:
        return tqdm(loader, desc=description, leave=False, disable=not self.progress, dynamic_ncols=True)
