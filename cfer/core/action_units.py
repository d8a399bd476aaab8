"""An action-unit detection head on pooled features: its loss, and its per-AU F1.

A compound expression is a blend of two basic ones' action units (Du et al. 2014). A backbone that
must also say which AUs a face shows is pushed to keep what compounds are made of. The head is one
linear layer, one logit per AU, trained with binary cross-entropy on each AU's presence (an
intensity above zero, or an AU that a label lists). Entries without a label (NaN) count for nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ActionUnitHead", "au_detection_scores", "au_presence_loss"]


class ActionUnitHead(nn.Module):
    """One presence logit per action unit, from pooled features.

    Args:
        feature_dim: Size of the features, ``D``.
        au_ids: The FACS number of each output, ``A`` of them.
    """

    def __init__(self, feature_dim: int, au_ids: Sequence[int]) -> None:
        super().__init__()
        self.au_ids = tuple(int(number) for number in au_ids)
        self.linear = nn.Linear(feature_dim, len(self.au_ids))

    def forward(self, features: Tensor) -> Tensor:
        """Logits ``(batch, A)`` of features ``(batch, D)``."""
        return self.linear(features)


def au_presence_loss(logits: Tensor, intensities: Tensor) -> Tensor:
    """Mean binary cross-entropy of each labelled AU's presence.

    Args:
        logits: ``(batch, A)``.
        intensities: ``(batch, A)``: above 0 means present; NaN means not labelled.

    Returns:
        A scalar; 0 (with a gradient path) when nothing in the batch is labelled.
    """
    labelled = ~torch.isnan(intensities)
    if not labelled.any():
        return logits.sum() * 0.0
    present = (intensities.nan_to_num(0.0) > 0).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits[labelled], present[labelled])


def au_detection_scores(probabilities: np.ndarray, intensities: np.ndarray, au_ids: Sequence[int],
                        threshold: float = 0.5) -> dict:
    """Per-AU F1 of presence, beside the F1 of saying every AU is always present.

    Args:
        probabilities: Predicted presence, shape ``(N, A)``.
        intensities: True intensities, shape ``(N, A)``: above 0 present, NaN not labelled.
        au_ids: FACS number of each column.
        threshold: A probability at least this says present.

    Returns:
        ``f1`` and ``always_present_f1`` by ``'AU<n>'`` (None for an AU no labelled image shows), their
        means over the AUs that some image shows, and ``threshold``.
    """
    f1, always = {}, {}
    for column, number in enumerate(au_ids):
        labelled = ~np.isnan(intensities[:, column])
        truth = intensities[labelled, column] > 0
        said = probabilities[labelled, column] >= threshold
        positives = int(truth.sum())
        if positives == 0:
            f1[f"AU{number}"] = always[f"AU{number}"] = None
            continue
        true_positives = int((truth & said).sum())
        f1[f"AU{number}"] = 2 * true_positives / (positives + int(said.sum()))
        always[f"AU{number}"] = 2 * positives / (positives + len(truth))
    shown = [key for key, value in f1.items() if value is not None]
    return {"f1": f1, "mean_f1": float(np.mean([f1[key] for key in shown])) if shown else None,
            "always_present_f1": always,
            "mean_always_present_f1": float(np.mean([always[key] for key in shown])) if shown else None,
            "threshold": threshold}
