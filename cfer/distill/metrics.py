"""What a distilled model is judged on: valence/arousal agreement, and its cost on the CPU.

Valence/arousal follow the AffectNet / EmoNet conventions (Mollahosseini et al. 2017; Toisoul et
al. 2021): RMSE, Pearson's correlation (PCC), Lin's concordance correlation coefficient
``CCC = 2 cov(x, y) / (var x + var y + (mean x - mean y)^2)``, and the sign agreement rate (SAGR, the
share of samples whose prediction has the sign of the label). Cost: parameters, multiply-accumulates
of one image (``torch.utils.flop_counter``, FLOPs / 2), median CPU latency at batch 1 and throughput
at batch 32.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["affect_metrics", "ccc", "model_cost"]

AXES = ("valence", "arousal")


def ccc(prediction: np.ndarray, target: np.ndarray) -> float:
    """Lin's concordance correlation coefficient of two vectors (population moments)."""
    prediction, target = np.asarray(prediction, np.float64), np.asarray(target, np.float64)
    covariance = ((prediction - prediction.mean()) * (target - target.mean())).mean()
    denominator = prediction.var() + target.var() + (prediction.mean() - target.mean()) ** 2
    return float(2 * covariance / denominator) if denominator > 0 else 0.0


def affect_metrics(prediction: np.ndarray, target: np.ndarray) -> dict[str, dict[str, float]]:
    """RMSE, PCC, CCC and SAGR of each axis.

    Args:
        prediction: (N, 2) predicted (valence, arousal).
        target: (N, 2) labels; rows with a NaN are left out.

    Returns:
        ``{"valence": {"rmse", "pcc", "ccc", "sagr"}, "arousal": {...}}``.
    """
    prediction, target = np.asarray(prediction, np.float64), np.asarray(target, np.float64)
    keep = ~np.isnan(target).any(axis=1)
    prediction, target = prediction[keep], target[keep]
    results = {}
    for axis, name in enumerate(AXES):
        p, t = prediction[:, axis], target[:, axis]
        pcc = float(np.corrcoef(p, t)[0, 1]) if p.std() > 0 and t.std() > 0 else 0.0
        results[name] = {"rmse": float(np.sqrt(((p - t) ** 2).mean())), "pcc": pcc, "ccc": ccc(p, t),
                         "sagr": float((np.sign(p) == np.sign(t)).mean())}
    return results


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
