"""Training-free prototype calibration of TEEN (plain PyTorch).

Wang, Zhou, Zhou, Wang & Ye (NeurIPS 2023), "Few-shot class-incremental learning via training-free
prototype calibration": a prototype computed from a few shots lies too far from the base classes it
resembles, so new-class samples are taken for base classes. TEEN moves each new prototype toward a
mixture of the base prototypes, weighted by how similar they are::

    p̂ = p / |p|,  b̂_j = b_j / |b_j|,
    w_j = softmax_j(τ · p̂ · b̂_j),
    Δ = normalize(Σ_j w_j b̂_j),
    p' = (1 − α) · p̂ + α · Δ

with ``α`` the shift weight and ``τ`` the softmax temperature. This follows the reference code
(github.com/wangkiw/TEEN, ``models/teen/Network.py``, ``MYNET.soft_calibration``), including the
normalisation of ``Δ`` and the unnormalised result (the cosine classifier normalises it); its
defaults are ``α = 0.5`` and ``τ = 16`` (``train.py``; the CIFAR-100 script uses ``α = 0.1``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["calibrate_prototypes"]


def calibrate_prototypes(novel: Tensor, base: Tensor, shift_weight: float = 0.5,
                         softmax_temperature: float = 16.0) -> Tensor:
    """TEEN's calibrated prototypes of new classes.

    Args:
        novel: Prototypes of the new classes, shape (C_new, D).
        base: Prototypes of the base classes, shape (C_base, D).
        shift_weight: ``α`` in [0, 1]: 0 keeps the normalised prototype, 1 replaces it by the base mixture.
        softmax_temperature: ``τ``: the larger, the more the mixture is the most similar base class alone.

    Returns:
        ``(1 − α) · normalize(novel) + α · Δ``, shape (C_new, D).

    Raises:
        ValueError: If ``shift_weight`` is outside [0, 1] or the feature sizes differ.
    """
    if not 0.0 <= shift_weight <= 1.0:
        raise ValueError(f"shift_weight must be in [0, 1], got {shift_weight}")
    if novel.shape[-1] != base.shape[-1]:
        raise ValueError(f"novel prototypes have {novel.shape[-1]} features, base ones {base.shape[-1]}")
    novel_unit, base_unit = F.normalize(novel.float(), dim=-1), F.normalize(base.float(), dim=-1)
    weights = torch.softmax(softmax_temperature * novel_unit @ base_unit.T, dim=1)
    delta = F.normalize(weights @ base_unit, dim=-1)
    return (1.0 - shift_weight) * novel_unit + shift_weight * delta
