"""Weight imprinting: a new class's output unit set from its few shots, with no gradient step.

Qi, Brown & Lowe (CVPR 2018), "Low-Shot Learning with Imprinted Weights": on a cosine classifier
``logits = s · cos(f, w_c)``, the weight of a new class ``c`` is the normalised mean of its shots'
normalised embeddings, ``w_c = normalize(mean_i normalize(f_i))``. Because the classifier compares
directions only, an imprinted unit is on the same footing as the units that were trained.

The base classes' units come from the same rule over their training features: a trained
``nn.Linear`` head is not a cosine classifier, and TEEN (Wang et al. 2023, reference code
github.com/wangkiw/TEEN, ``models/teen/helper.py``, ``replace_base_fc``) replaces the base weights
by the class means of the training embeddings in the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CosineClassifier", "class_means", "imprint_weights"]


def class_means(features: Tensor, labels: Tensor, num_classes: int | None = None) -> Tensor:
    """Mean feature vector of every class.

    Args:
        features: Shape (N, D).
        labels: Class indices in ``[0, num_classes)``, shape (N,).
        num_classes: Rows of the result; one past the largest label if None.

    Returns:
        Shape (num_classes, D), float32.

    Raises:
        ValueError: If a class in ``[0, num_classes)`` has no sample.
    """
    count = int(labels.max()) + 1 if num_classes is None else num_classes
    sums = torch.zeros(count, features.shape[1], dtype=torch.float64).index_add_(0, labels, features.double())
    counts = torch.bincount(labels, minlength=count)[:count]
    if bool((counts == 0).any()):
        raise ValueError(f"classes {torch.nonzero(counts == 0).flatten().tolist()} have no sample")
    return (sums / counts.unsqueeze(1)).float()


def imprint_weights(features: Tensor, labels: Tensor, num_classes: int | None = None,
                    normalize_inputs: bool = True) -> Tensor:
    """Imprinted weights: per class, the L2-normalised mean of the (normalised) features.

    Args:
        features: Shots (or training samples), shape (N, D).
        labels: Class indices in ``[0, num_classes)``, shape (N,); each class has at least one sample.
        num_classes: Rows of the result; one past the largest label if None.
        normalize_inputs: Normalise each feature before averaging (Qi et al.); False averages the
            raw features first (TEEN's prototypes).

    Returns:
        Unit-norm rows, shape (num_classes, D).
    """
    inputs = F.normalize(features.float(), dim=1) if normalize_inputs else features.float()
    return F.normalize(class_means(inputs, labels, num_classes), dim=1)


class CosineClassifier(nn.Module):
    """``logits = scale · normalize(f) · normalize(W)ᵀ``; classes are added by appending rows.

    Args:
        weight: Initial rows, one per class, shape (C, D); stored as given (scoring normalises them).
        scale: The factor ``s`` of the cosine logits (TEEN's ``temperature``, 16 by default); the
            argmax does not depend on it, the softmax does.
    """

    def __init__(self, weight: Tensor, scale: float = 16.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone().float())
        self.scale = scale

    @property
    def num_classes(self) -> int:
        """Rows of the classifier."""
        return self.weight.shape[0]

    @torch.no_grad()
    def append(self, rows: Tensor) -> None:
        """Adds classes after the current ones.

        Args:
            rows: Their weights, shape (C_new, D).
        """
        self.weight = nn.Parameter(torch.cat([self.weight.detach(), rows.detach().to(self.weight)]))

    def forward(self, features: Tensor, weight: Tensor | None = None) -> Tensor:
        """Cosine logits, shape (N, C), of features (N, D).

        Args:
            features: Shape (N, D).
            weight: Rows to score against instead of ``self.weight`` (e.g. old rows with new ones being
                fitted), shape (C, D).
        """
        rows = self.weight if weight is None else weight
        return self.scale * F.normalize(features, dim=1) @ F.normalize(rows, dim=1).T
