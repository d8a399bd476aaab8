"""Classifiers on frozen features that need no gradient step: class means, and RanPAC's ridge head.

* :class:`ClassMeans`: one mean feature vector per class, scored by cosine similarity. It is the
  classifier of SimpleCIL (Zhou et al. 2023, "Revisiting class-incremental learning with pre-trained
  models: generalizability and adaptivity are all you need"), and the nearest-mean rule of iCaRL
  (Rebuffi et al. 2017) when the means come from exemplars.
* :class:`RandomProjectionRidge`: RanPAC (McDonnell et al., NeurIPS 2023, "RanPAC: Random Projections
  and Pre-trained Models for Continual Learning"): features go through a fixed random projection and a
  ReLU, ``h = relu(f R)``; the head is the ridge solution ``W = (G + λ I)^{-1} C`` of the accumulated
  Gram matrix ``G = Σ h hᵀ`` and class sums ``C = Σ h yᵀ`` (``y`` one-hot).
* :func:`align_weights`: weight aligning (Zhao et al. 2020, "Maintaining discrimination and fairness
  in class incremental learning"), which rescales the new classes' output weights to the old ones'
  mean norm against the bias toward the newest classes.

Both heads only accumulate statistics (:meth:`update`), so class-incremental learning with them is
exact: the same data in any number of steps gives the same head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ClassMeans", "RandomProjectionRidge", "align_weights", "ridge_errors"]


class ClassMeans(nn.Module):
    """Nearest class mean on cosine similarity; a class's mean is the average of its raw features.

    Args:
        feature_dim: Size of the feature vectors.
    """

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.register_buffer("sums", torch.zeros(0, feature_dim, dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(0, dtype=torch.float64))

    @property
    def num_classes(self) -> int:
        """Classes that have (or will have) a mean: one past the largest label seen."""
        return self.sums.shape[0]

    @torch.no_grad()
    def update(self, features: Tensor, labels: Tensor) -> None:
        """Add samples to their classes' means.

        Args:
            features: Shape ``(n, feature_dim)``.
            labels: Class indices, shape ``(n,)``.
        """
        if len(labels) == 0:
            return
        self._grow(int(labels.max()) + 1)
        self.sums.index_add_(0, labels.to(self.sums.device), features.to(self.sums))
        self.counts.index_add_(0, labels.to(self.counts.device), torch.ones_like(labels, dtype=torch.float64))

    @property
    def means(self) -> Tensor:
        """Class means, shape ``(num_classes, feature_dim)``; zero for a class without samples."""
        return (self.sums / self.counts.clamp_min(1).unsqueeze(1)).float()

    def forward(self, features: Tensor) -> Tensor:
        """Cosine similarity of each feature vector to each class mean, shape ``(n, num_classes)``."""
        return F.normalize(features, dim=1) @ F.normalize(self.means.to(features), dim=1).T

    def _grow(self, num_classes: int) -> None:
        if num_classes > self.num_classes:
            extra = num_classes - self.num_classes
            self.sums = torch.cat([self.sums, self.sums.new_zeros(extra, self.sums.shape[1])])
            self.counts = torch.cat([self.counts, self.counts.new_zeros(extra)])


class RandomProjectionRidge(nn.Module):
    """RanPAC's head: a fixed random ReLU projection, then a ridge classifier of accumulated statistics.

    Args:
        feature_dim: Size of the feature vectors ``f``.
        projection_dim: Size ``M`` of the projection (the paper uses 10,000; a few thousand suffice
            for a few dozen classes, and cost ``M²`` memory).
        ridge: The regulariser ``λ``; :meth:`choose_ridge` picks it from data.
        seed: Seed of the projection matrix, drawn once from ``N(0, 1)``.
    """

    def __init__(self, feature_dim: int, projection_dim: int = 2000, ridge: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("projection", torch.randn(feature_dim, projection_dim, generator=generator))
        self.register_buffer("gram", torch.zeros(projection_dim, projection_dim, dtype=torch.float64))
        self.register_buffer("class_sums", torch.zeros(projection_dim, 0, dtype=torch.float64))
        self.register_buffer("weight", torch.zeros(projection_dim, 0))
        self.ridge = ridge

    @property
    def num_classes(self) -> int:
        """One past the largest label seen."""
        return self.class_sums.shape[1]

    def expand(self, features: Tensor) -> Tensor:
        """``h = relu(f R)``, shape ``(n, projection_dim)``, for features ``(n, feature_dim)``."""
        return F.relu(features.to(self.projection) @ self.projection)

    @torch.no_grad()
    def update(self, features: Tensor, labels: Tensor, solve: bool = True) -> None:
        """Accumulate ``G`` and ``C`` with samples, then solve for the head with the current ``λ``.

        Args:
            features: Shape ``(n, feature_dim)``.
            labels: Class indices, shape ``(n,)``.
            solve: Whether to solve now; not when :meth:`choose_ridge` comes next and solves anyway.
        """
        if len(labels) == 0:
            return
        h = self.expand(features).double()
        if int(labels.max()) + 1 > self.num_classes:
            extra = int(labels.max()) + 1 - self.num_classes
            self.class_sums = torch.cat([self.class_sums, self.class_sums.new_zeros(len(self.class_sums), extra)], 1)
        self.gram += h.T @ h
        self.class_sums += h.T @ F.one_hot(labels.to(h.device), self.num_classes).double()
        if solve:
            self.solve()

    @torch.no_grad()
    def solve(self) -> None:
        """``W = (G + λ I)^{-1} C``."""
        self.weight = _ridge(self.gram, self.class_sums, self.ridge).float()

    @torch.no_grad()
    def choose_ridge(self, features: Tensor, labels: Tensor, candidates: tuple[float, ...] = tuple(
            10.0 ** k for k in range(-4, 9)), held_out: float = 0.2, seed: int = 0,
            scored: tuple[Tensor, Tensor] | None = None) -> float:
        """Pick ``λ`` by the mean squared error of the fitted ridge on samples it did not fit.

        As RanPAC does, the scored samples are a random share ``held_out`` of ``features``; with
        ``scored``, every one of ``features`` is fitted and ``scored``'s samples (other subjects')
        are scored. Only these samples are used (not the accumulated statistics), so call it with
        data of several classes (the first experience).

        Args:
            features: Shape ``(n, feature_dim)``.
            labels: Class indices, shape ``(n,)``.
            candidates: Values of ``λ`` to try.
            held_out: Share of the samples scored, when ``scored`` is None.
            seed: Seed of that split.
            scored: Features ``(m, feature_dim)`` and labels ``(m,)`` to score on instead.

        Returns:
            The chosen ``λ`` (also stored, and the head solved with it).
        """
        classes = max(self.num_classes, int(labels.max()) + 1)
        h, targets = self.expand(features).double(), F.one_hot(labels, classes).double()
        if scored is None:
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
            fit, score = order[:int(len(labels) * (1 - held_out))], order[int(len(labels) * (1 - held_out)):]
            h, targets, h_score, y_score = h[fit], targets[fit], h[score], targets[score]
        else:
            h_score = self.expand(scored[0]).double()
            y_score = F.one_hot(scored[1].to(labels.device), classes).double()
        errors = ridge_errors(h, targets, h_score, y_score, candidates)
        self.ridge = candidates[min(range(len(candidates)), key=errors.__getitem__)]
        self.solve()
        return self.ridge

    def forward(self, features: Tensor) -> Tensor:
        """Scores ``h W``, shape ``(n, num_classes)``."""
        return self.expand(features) @ self.weight.to(features)


@torch.no_grad()
def ridge_errors(h_fit: Tensor, y_fit: Tensor, h_score: Tensor, y_score: Tensor,
                 candidates: Sequence[float]) -> list[float]:
    """Held-out mean squared error of the ridge solution for each ``λ``, from one eigendecomposition.

    ``W(λ) = (HᵀH + λI)^{-1} HᵀY`` is computed through the eigendecomposition of the smaller of
    ``HᵀH`` (``d × d``) and ``HHᵀ`` (``n × n``, then ``W = Hᵀ(HHᵀ + λI)^{-1}Y``), so that trying many
    values costs about one solve.

    Args:
        h_fit: Fitted samples, shape ``(n, d)``.
        y_fit: Their targets, shape ``(n, k)``.
        h_score: Scored samples, shape ``(m, d)``.
        y_score: Their targets, shape ``(m, k)``.
        candidates: Values of ``λ``.

    Returns:
        ``mean((h_score W(λ) - y_score)²)`` for each candidate, in order.
    """
    if len(h_fit) < h_fit.shape[1]:  # dual: h_score W = (h_score Hᵀ) U diag(1/(s+λ)) Uᵀ Y
        values, vectors = torch.linalg.eigh(h_fit @ h_fit.T)
        left, right = h_score @ h_fit.T @ vectors, vectors.T @ y_fit
    else:  # primal: W = Q diag(1/(s+λ)) Qᵀ HᵀY
        values, vectors = torch.linalg.eigh(h_fit.T @ h_fit)
        left, right = h_score @ vectors, vectors.T @ (h_fit.T @ y_fit)
    return [float(((left @ (right / (values + ridge).unsqueeze(1)) - y_score) ** 2).mean()) for ridge in candidates]


def _ridge(gram: Tensor, sums: Tensor, ridge: float) -> Tensor:
    eye = torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(gram + ridge * eye, sums)


@torch.no_grad()
def align_weights(layer: nn.Linear, num_new: int) -> float:
    """Weight aligning: scale the last ``num_new`` rows of ``layer`` to the old rows' mean norm, in place.

    Args:
        layer: The output layer, rows = classes, the new ones last.
        num_new: How many rows are new.

    Returns:
        The factor ``mean ‖w_old‖ / mean ‖w_new‖`` applied to the new rows (weights and biases).
    """
    norms = layer.weight.norm(dim=1)
    old, new = norms[:-num_new], norms[-num_new:]
    if num_new <= 0 or len(old) == 0:
        return 1.0
    factor = float(old.mean() / new.mean())
    layer.weight[-num_new:] *= factor
    if layer.bias is not None:
        layer.bias[-num_new:] *= factor
    return factor
