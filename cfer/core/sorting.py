"""Predictive sorting and the memory budget of PSMR (Maiden & Nakisa 2023), in plain PyTorch.

The paper keeps for every class the ``m`` training samples that the model scores highest on that
class's own output unit, with ``M = floor(0.3 * N_train)`` and ``m = floor(M / C_total)``. The
reference (github.com/AngusMaiden/complex-FER, ``src/models/train.py``,
``RepresentativeMemoryUpdate``) sorts ``model.predict`` outputs, which are the *logits* of its last
``Dense`` layer; the paper describes softmax probabilities. Both orders are available through
``score``; the default follows the paper. The Avalanche storage policy built on these functions is
``strategies.psmr.PSMRBuffer``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from cfer.core.inference import predict

__all__ = [
    "SCORES",
    "Score",
    "memory_per_class",
    "predictive_sort",
    "representative_memory_size",
    "sample_per_class",
    "sort_by_score",
]

Score = Literal["probability", "logit"]
SCORES: tuple[str, ...] = ("probability", "logit")


def sort_by_score(logits: Tensor, class_index: int, score: Score = "probability") -> Tensor:
    """Order samples by how strongly ``logits`` predict ``class_index``, best first.

    One stable descending sort, so ties keep the input order.

    Args:
        logits: Shape ``(n, classes)`` with ``classes > class_index``.
        class_index: Output unit to rank by (the samples' own class).
        score: ``'probability'`` ranks by the softmax probability of the unit (the paper);
            ``'logit'`` by its raw logit (what the reference code sorts).

    Returns:
        Indices into ``logits``, shape ``(n,)``.

    Raises:
        ValueError: If ``score`` is unknown.
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; known scores: {list(SCORES)}")
    if logits.numel() == 0:
        return torch.empty(0, dtype=torch.long)
    values = logits.softmax(dim=-1) if score == "probability" else logits
    return torch.sort(values[:, class_index], descending=True, stable=True).indices


def predictive_sort(
    model: nn.Module,
    inputs: Tensor | Dataset,
    class_index: int,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    score: Score = "probability",
) -> Tensor:
    """Order candidates by how strongly ``model`` predicts ``class_index`` for them.

    One inference pass (:func:`cfer.core.inference.predict`), then :func:`sort_by_score`.

    Args:
        model: Maps inputs to logits ``(batch, classes)`` with ``classes > class_index``.
        inputs: Candidates ``(n, ...)`` or a dataset of ``(input, ...)`` tuples.
        class_index: Output unit to rank by (the candidates' own class).
        batch_size: Mini-batch size of the inference pass.
        device: Device to run on; the model's current device if None.
        score: ``'probability'`` or ``'logit'``; see :func:`sort_by_score`.

    Returns:
        Indices into ``inputs``, shape ``(n,)``, best first.

    Raises:
        ValueError: If ``score`` is unknown.
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; known scores: {list(SCORES)}")
    logits = predict(model, inputs, batch_size=batch_size, device=device)
    return sort_by_score(logits, class_index, score)


def representative_memory_size(n_train: int, fraction: float = 0.3) -> int:
    """Total memory budget ``floor(fraction * n_train)`` (the paper's ``M``).

    Args:
        n_train: Number of training samples over all classes of the stream.
        fraction: Share of the training data kept.

    Returns:
        The budget.
    """
    # exact rational arithmetic: 0.3 * n in floats can land just below an integer
    return math.floor(Fraction(repr(fraction)) * n_train)


def memory_per_class(n_train: int, n_classes_total: int, fraction: float = 0.3) -> int:
    """Exemplars per class, ``floor(floor(fraction * n_train) / n_classes_total)`` (``m``).

    Args:
        n_train: Number of training samples over all classes of the stream.
        n_classes_total: Number of classes of the whole stream (basic and compound).
        fraction: Share of the training data kept.

    Returns:
        The per-class count.
    """
    return representative_memory_size(n_train, fraction) // n_classes_total


def sample_per_class(
    targets: Tensor, per_class: int, generator: torch.Generator | None = None
) -> Tensor:
    """Draw up to ``per_class`` random samples of every class, without replacement.

    Args:
        targets: Class index of each sample, shape ``(n,)``.
        per_class: Samples kept per class; classes with fewer keep all of theirs.
        generator: Random generator; the global one if None.

    Returns:
        Sorted indices into ``targets``, shape ``(k,)``.
    """
    kept = []
    for class_id in targets.unique():
        members = (targets == class_id).nonzero().flatten()
        chosen = torch.randperm(len(members), generator=generator)[:per_class]
        kept.append(members[chosen])
    if not kept:
        return torch.empty(0, dtype=torch.long)
    return torch.cat(kept).sort().values
