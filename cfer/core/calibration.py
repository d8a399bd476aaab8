"""Training-free calibration of new classes' statistics toward base classes (plain PyTorch).

Two calibrations: TEEN's of prototypes (:func:`calibrate_prototypes`), and C-RanPAC's of Gaussian class
statistics, from which pseudo-features are drawn (:func:`calibrated_gaussian`, :func:`sample_gaussian`).

**TEEN.**
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


**C-RanPAC.** Goswami, Twardowski, van de Weijer et al. (CVPR Workshops 2024), "Calibrating
higher-order statistics for few-shot class-incremental learning with pre-trained vision
transformers", reference code github.com/dipamgoswami/FSCIL-Calibration, ``models/ranpac.py``
(``replace_fc``): a new class's mean and covariance from a few shots are mixed with the base classes'
ones, weighted by ``w``, and 800 samples of that Gaussian replace the shots in RanPAC's statistics::

    μ' = α · μ + (1 − α) · Σ_j w_j μ_j,
    Σ' = β · Σ_j w_j Σ_j + (1 − β) · Σ    (the reference: α = 0.9, β = 0.5)

The reference weighs by ``w = softmax(16 · μ · μ_j)`` on raw dot products of ViT features; on these
CNN features (norms of about 70) that softmax is one-hot, so :func:`similarity_weights` takes cosine
similarities, as TEEN does. cfer's compositional method passes the compound's components instead
(``w = ½`` on each, 0 elsewhere, :func:`component_weights`), and its prior as ``Σ_j w_j μ_j``.
A Gaussian is kept as the rows it came from (``Σ = XᵀX / (n − 1)`` of the centred rows ``X``), so
sampling needs no ``D × D`` matrix and no factorisation: ``x = μ' + Σ_k sqrt(c_k / (n_k − 1)) · z_k X_k``
with ``z_k ~ N(0, I)`` has covariance ``Σ_k c_k Σ_k`` exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CalibratedGaussian", "calibrate_prototypes", "calibrated_gaussian", "component_weights",
           "sample_classes", "sample_gaussian", "similarity_weights"]


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


@dataclass(frozen=True)
class CalibratedGaussian:
    """A Gaussian ``N(mean, Σ_k c_k · cov(rows_k))`` kept as the rows its covariance comes from.

    Attributes:
        mean: Shape (D,).
        parts: ``(c_k, rows_k)`` pairs: a weight and samples of shape (n_k, D); a part with fewer
            than two rows has no covariance and is ignored.
    """

    mean: Tensor
    parts: tuple[tuple[float, Tensor], ...]


def similarity_weights(novel: Tensor, base: Tensor, softmax_temperature: float = 16.0) -> Tensor:
    """C-RanPAC's weights of the base classes, ``softmax_j(τ · cos(μ, μ_j))``, shape (C_new, C_base)."""
    return torch.softmax(softmax_temperature * F.normalize(novel.float(), dim=-1) @ F.normalize(base.float(), dim=-1).T, 1)


def component_weights(pairs: Tensor, num_base: int) -> Tensor:
    """Weight ½ on each of a compound's two components, shape (C, num_base), from ``pairs`` (C, 2)."""
    weights = torch.zeros(len(pairs), num_base)
    weights.scatter_add_(1, pairs.long(), torch.full(pairs.shape, 0.5))
    return weights


def calibrated_gaussian(shots: Tensor, shot_weight: float, prior: Tensor, weights: Tensor,
                        base_rows: Sequence[Tensor], covariance_weight: float = 0.5) -> CalibratedGaussian:
    """One new class's calibrated statistics: ``μ' = a·μ + (1 − a)·prior``, ``Σ' = β·Σ_j w_j Σ_j + (1 − β)·Σ``.

    Args:
        shots: The class's shot features, shape (K, D); K = 0 gives the prior alone.
        shot_weight: ``a`` in [0, 1], the share of the shots' mean (C-RanPAC: α = 0.9).
        prior: The mean the shots are pulled toward, shape (D,) (C-RanPAC: ``Σ_j w_j μ_j``).
        weights: ``w_j`` of each base class, shape (C_base,).
        base_rows: Each base class's training features, (n_j, D) each.
        covariance_weight: ``β``; the shots' own covariance has ``1 − β`` and is left out below two shots
            (then ``β = 1``). C-RanPAC's reference gives both terms 0.5.

    Returns:
        The Gaussian, its covariance kept as rows.

    Raises:
        ValueError: If a weight is outside [0, 1], or there are no shots and ``shot_weight`` is not 0.
    """
    if not (0.0 <= shot_weight <= 1.0 and 0.0 <= covariance_weight <= 1.0):
        raise ValueError(f"shot_weight and covariance_weight must be in [0, 1], got {shot_weight}, {covariance_weight}")
    if len(shots) == 0 and shot_weight > 0:
        raise ValueError("without shots the mean is the prior's: shot_weight must be 0")
    mean = prior.float() if len(shots) == 0 else shot_weight * shots.float().mean(0) + (1 - shot_weight) * prior.float()
    beta = covariance_weight if len(shots) >= 2 else 1.0
    parts = [(beta * float(w), rows) for w, rows in zip(weights.tolist(), base_rows) if w > 0]
    if beta < 1.0:
        parts.append((1.0 - beta, shots))
    return CalibratedGaussian(mean, tuple(parts))


def sample_gaussian(gaussian: CalibratedGaussian, count: int, generator: torch.Generator | None = None) -> Tensor:
    """``count`` samples of the Gaussian, shape (count, D), from its rows (no ``D × D`` matrix).

    Each part adds ``sqrt(c / (n − 1)) · z X`` with ``X`` its centred rows (n, D) and ``z ~ N(0, I_n)``,
    whose covariance is ``c · XᵀX / (n − 1) = c · cov(rows)``.
    """
    samples = gaussian.mean.float().expand(count, -1).clone()
    for weight, rows in gaussian.parts:
        if len(rows) < 2 or weight <= 0:
            continue
        centred = rows.float() - rows.float().mean(0)
        noise = torch.randn(count, len(rows), generator=generator)
        samples += (weight / (len(rows) - 1)) ** 0.5 * noise @ centred
    return samples


def sample_classes(gaussians: Sequence[tuple[int, CalibratedGaussian]], count: int,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``count`` samples of each class's Gaussian, in the order given, and their labels.

    Args:
        gaussians: ``(label, gaussian)`` per class.
        count: Samples per class.
        generator: Draws the samples, class after class.

    Returns:
        Samples ``(len(gaussians) · count, D)`` and labels ``(len(gaussians) · count,)`` (int64).
    """
    samples = [sample_gaussian(gaussian, count, generator) for _, gaussian in gaussians]
    labels = [torch.full((count,), label, dtype=torch.int64) for label, _ in gaussians]
    return torch.cat(samples), torch.cat(labels)
