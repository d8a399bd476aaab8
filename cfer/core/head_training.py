"""Training a head (a linear probe, an MLP) on features computed once: the one loop for it.

The basic phase's head stage, the Grad-CAM linear probe and the few-shot linear probe all fit a
small module on frozen-backbone features, and the basic phase fits its valence/arousal regressor
the same way. :func:`fit_head` is that loop: mini-batches (or the full batch), cross-entropy or
another criterion, an optional extra loss term, an optional validation set with early stopping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cfer.core.early_stopping import EarlyStopping

__all__ = ["HeadEpoch", "fit_head"]


class HeadEpoch(TypedDict):
    """What one epoch of :func:`fit_head` measured (validation entries are None without one; accuracies
    are None for targets that are not class indices)."""

    train_loss: float
    train_accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None


def fit_head(
    head: nn.Module,
    features: Tensor,
    targets: Tensor,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    *,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    penalty: Callable[[], Tensor] | None = None,
    validation: tuple[Tensor, Tensor] | None = None,
    stopper: EarlyStopping | None = None,
    snapshot: nn.Module | None = None,
    criterion: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
) -> list[HeadEpoch]:
    """Fit ``head`` to map ``features`` to ``targets``, by cross-entropy unless told otherwise.

    Args:
        head: Maps features ``(batch, feature_dim)`` to logits ``(batch, classes)`` (or, with another
            ``criterion``, to whatever it compares with the targets).
        features: Training features, shape ``(n, feature_dim)``.
        targets: Class indices, shape ``(n,)``; or float targets ``(n, d)`` for a regression ``criterion``.
        optimizer: Optimizer over ``head``'s parameters.
        epochs: Passes over the data (with the full batch: optimisation steps).
        batch_size: Mini-batch size, batches drawn by a random permutation every epoch; None for
            full-batch steps in data order.
        generator: Random generator of the permutations; the global one if None.
        penalty: Extra loss term added at every step (e.g. an L2 penalty).
        validation: ``(features, targets)`` scored after every epoch (cross-entropy and accuracy).
        stopper: Early stopping on the validation loss; needs ``validation``. Training stops when
            it says so; restoring the best weights is left to the caller.
        snapshot: Module whose weights ``stopper`` keeps; ``head`` if None.
        criterion: ``(outputs, targets) -> scalar loss``, used for training and validation.

    Returns:
        One record per epoch run.

    Raises:
        ValueError: If ``stopper`` is given without ``validation``.
    """
    if stopper is not None and validation is None:
        raise ValueError("early stopping needs a validation set")
    history: list[HeadEpoch] = []
    classes = not targets.is_floating_point()
    for epoch in range(epochs):
        head.train()
        total, correct = 0.0, 0
        for batch in _batches(len(features), batch_size, generator):
            inputs, labels = (features, targets) if batch is None else (features[batch], targets[batch])
            logits = head(inputs)
            loss = criterion(logits, labels)
            if penalty is not None:
                loss = loss + penalty()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(labels)
            if classes:
                correct += int((logits.argmax(1) == labels).sum())
        record = HeadEpoch(train_loss=total / len(features), train_accuracy=correct / len(features) if classes else None,
                           val_loss=None, val_accuracy=None)
        if validation is not None:
            record["val_loss"], record["val_accuracy"] = _score(head, *validation, criterion)
        history.append(record)
        if stopper is not None and stopper.step(record["val_loss"], snapshot or head, epoch):
            break
    head.eval()
    return history


def _batches(n: int, batch_size: int | None, generator: torch.Generator | None) -> list[Tensor | None]:
    if batch_size is None:
        return [None]
    return list(torch.randperm(n, generator=generator).split(batch_size))


@torch.no_grad()
def _score(head: nn.Module, features: Tensor, targets: Tensor,
           criterion: Callable[[Tensor, Tensor], Tensor]) -> tuple[float, float | None]:
    head.eval()
    logits = head(features)
    accuracy = None if targets.is_floating_point() else float((logits.argmax(1) == targets).float().mean())
    return criterion(logits, targets).item(), accuracy
