"""Batched inference: run a model (or any batch function) over many inputs, one place for it all.

Every part of cfer that scores a set of images or features (PSMR ranking, validation early stopping,
feature extraction, probes) goes through :func:`predict`, so batching, device moves, eval mode and
``no_grad`` are decided once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

__all__ = ["predict"]


@torch.no_grad()
def predict(
    model: nn.Module | Callable[[Tensor], Tensor],
    inputs: Tensor | Dataset,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    out_device: torch.device | str | None = "cpu",
) -> Tensor:
    """Outputs of ``model`` over ``inputs`` in mini-batches, in input order.

    An ``nn.Module`` runs in eval mode and gets its previous mode back afterwards; a plain callable
    (e.g. ``model.features``) is called as it is.

    Args:
        model: Maps a batch ``(batch, ...)`` to outputs ``(batch, ...)``.
        inputs: A tensor ``(n, ...)``, or a dataset whose items are tuples starting with the input
            (an Avalanche dataset yields ``(x, y, ..., task)``); its ``collate_fn`` is used if it has
            one.
        batch_size: Inputs per call.
        device: Where each batch goes before ``preprocess``; the model's device if None (the CPU
            for a callable without parameters).
        preprocess: Applied to each batch on ``device`` (e.g. uint8 to normalised float).
        out_device: Where the outputs are gathered; None keeps them on ``device``.

    Returns:
        The concatenated outputs, shape ``(n, ...)``; an empty tensor for no inputs.
    """
    device = torch.device(device) if device is not None else _device_of(model)
    module = model if isinstance(model, nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    try:
        outputs = []
        for batch in _batches(inputs, batch_size):
            batch = batch.to(device, non_blocking=True)
            output = model(preprocess(batch) if preprocess is not None else batch)
            outputs.append(output if out_device is None else output.to(out_device))
    finally:
        if module is not None:
            module.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0, 0)


def _batches(inputs: Tensor | Dataset, batch_size: int) -> Iterator[Tensor]:
    if isinstance(inputs, Tensor):
        yield from inputs.split(batch_size)
        return
    collate_fn: Any = getattr(inputs, "collate_fn", None)
    loader = DataLoader(inputs, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    for batch in loader:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def _device_of(model: nn.Module | Callable[[Tensor], Tensor]) -> torch.device:
    owner = model if isinstance(model, nn.Module) else getattr(model, "__self__", None)
    if isinstance(owner, nn.Module):
        parameter = next(owner.parameters(), None)
        if parameter is not None:
            return parameter.device
    return torch.device("cpu")
