"""What a distilled model is judged on: valence/arousal agreement, and its cost on the CPU.

Valence/arousal: :func:`cfer.reports.affect_metrics` (RMSE, PCC, CCC, SAGR; re-exported here).
Cost: parameters, multiply-accumulates of one image (``torch.utils.flop_counter``, FLOPs / 2),
median CPU latency at batch 1 and throughput at batch 32.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cfer.reports import affect_metrics, ccc

__all__ = ["affect_metrics", "ccc", "model_cost"]

def model_cost(model: nn.Module, size: int, repeats: int = 30, batch: int = 32) -> dict[str, float]:
    """Parameters, MACs per image, median CPU latency (batch 1) and throughput (batch ``batch``).

    Args:
        model: The model, run on the CPU in eval mode (its device is restored after).
        size: Input side in pixels.
        repeats: Timed calls at batch 1.
        batch: Batch size of the throughput measurement.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model = model.cpu().eval()
    image = torch.randn(1, 3, size, size)
    with torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            model(image)
        for _ in range(3):
            model(image)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(image)
            times.append(time.perf_counter() - start)
        images = torch.randn(batch, 3, size, size)
        start = time.perf_counter()
        model(images)
        throughput = batch / (time.perf_counter() - start)
    model.to(device).train(was_training)
    return {"parameters": int(sum(p.numel() for p in model.parameters())), "macs": counter.get_total_flops() / 2,
            "latency_ms": 1000 * statistics.median(times), "images_per_second": throughput}
