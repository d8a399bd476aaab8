"""Prototypes of compound classes built from their basic components, before any compound image is seen.

A compound expression is a blend of two basic ones (Du et al. 2014: happily surprised = happy +
surprised, AUs 1, 2, 12 and 25). If a face's features moved linearly with its action units,
``f ≈ r + W·a``, and a compound showed the union of its components' AUs, the compound's mean would be
``r + W·(a_1 + a_2) = r + (m_1 − r) + (m_2 − r)``: the reference point plus both components'
displacements from it. :func:`compositional_prior` builds

    p_c = r + s · ((m_1 − r) + (m_2 − r)),

where ``m_1, m_2`` are the components' class means and ``r`` a reference (the mean of the basic means).
``s = 0.5`` is the plain mean of the two prototypes, ``(m_1 + m_2) / 2`` (``r`` cancels): the zero-shot
baseline. ``s = 1`` is the additive, linear-AU prior. Overlapping AUs, saturating features and ReLUs
make the truth lie between, so ``s`` is chosen on validation subjects.

Action units give a second prior, :class:`AUFeatureMap`: a ridge map from the AU intensities of basic
images to their features, applied to the compound's own prototypical AUs (Du et al.'s Table 1, which
is not always the union of its components': happily surprised is AU 1, 2, 12, 25, without surprise's
AU 26).

:func:`nearest_prototype` scores features against prototypes by cosine similarity, optionally after
subtracting ``r`` (centring), the rule of ``ncm`` and SimpleCIL.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["AUFeatureMap", "component_pairs", "compositional_prior", "nearest_prototype"]


def component_pairs(components: Sequence[Sequence[str]], basic_classes: Sequence[str]) -> Tensor:
    """Each compound's two components, as indices into ``basic_classes``.

    Args:
        components: Each compound's two basic components by name, e.g.
            ``cfer.taxonomy.get_category(name).components``.
        basic_classes: The basic classes, in output order.

    Returns:
        Shape ``(len(components), 2)``, int64.

    Raises:
        ValueError: If a compound does not have two components, or a component is not among ``basic_classes``.
    """
    pairs = []
    for pair in components:
        if len(pair) != 2:
            raise ValueError(f"a compound has two basic components, got {tuple(pair)}")
        missing = [c for c in pair if c not in basic_classes]
        if missing:
            raise ValueError(f"components {missing} are not among the basic classes {list(basic_classes)}")
        pairs.append([list(basic_classes).index(c) for c in pair])
    return torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2)


def compositional_prior(means: Tensor, pairs: Tensor, strength: float = 0.5, reference: Tensor | None = None) -> Tensor:
    """Compound prototypes ``r + s·((m_1 − r) + (m_2 − r))`` from the basic class means.

    Args:
        means: Basic class means, shape ``(B, D)``.
        pairs: Components of each compound, indices into ``means``, shape ``(C, 2)``.
        strength: ``s``; 0.5 is the plain mean of the two prototypes, 1 the additive prior.
        reference: ``r``, shape ``(D,)``; the mean of ``means`` when None.

    Returns:
        Prototypes, shape ``(C, D)``.
    """
    r = means.mean(0) if reference is None else reference.to(means)
    displacement = (means[pairs[:, 0]] - r) + (means[pairs[:, 1]] - r)
    return r + strength * displacement


def nearest_prototype(features: Tensor, prototypes: Tensor, center: Tensor | None = None) -> Tensor:
    """Cosine similarity of each feature vector to each prototype, shape ``(N, C)``.

    Args:
        features: Shape ``(N, D)``.
        prototypes: Shape ``(C, D)``.
        center: Subtracted from both first, shape ``(D,)``; None compares raw vectors.
    """
    if center is not None:
        features, prototypes = features - center, prototypes - center
    return F.normalize(features, dim=1) @ F.normalize(prototypes, dim=1).T


class AUFeatureMap:
    """A ridge map from action-unit intensities to features, ``f ≈ [a, 1] W``, fitted on basic images.

    Applied to a compound's prototypical AUs (Du et al. 2014, ``cfer.taxonomy``) at their typical
    intensities, it gives the compound a prototype before any compound image is seen: the AUs are
    shared by basic and compound faces, so a map learned on one applies to the other, where the two
    components' prototypes only average their faces.

    Args:
        intensities: AU intensities of the basic training images, shape ``(N, A)`` (0 = absent).
        features: Their features, shape ``(N, D)``.
        ridge: The regulariser ``λ`` of the slope ``(AᵀA + λI)^{-1} AᵀF`` on centred
            intensities ``A`` and features ``F``; the intercept is not shrunk.
    """

    def __init__(self, intensities: Tensor, features: Tensor, ridge: float = 1.0) -> None:
        a, f = intensities.double(), features.double()
        a_mean, f_mean = a.mean(0), f.mean(0)
        a, f = a - a_mean, f - f_mean  # the intercept is not shrunk: a large λ gives the mean face
        slope = torch.linalg.solve(a.T @ a + ridge * torch.eye(a.shape[1], dtype=a.dtype), a.T @ f)
        self.weight = torch.cat([slope, (f_mean - a_mean @ slope).unsqueeze(0)]).float()  # (A + 1, D)
        active = (intensities > 0).float()
        # an AU's typical intensity: its mean over the images that show it
        self.typical = (intensities.float() * active).sum(0) / active.sum(0).clamp_min(1)  # (A,)

    def template(self, aus: Sequence[Sequence[int]], au_ids: Sequence[int]) -> Tensor:
        """AU vectors ``(C, A)``: each class's AUs at their typical intensities, the others 0.

        Args:
            aus: Each class's AU numbers (FACS), e.g. ``get_category(name).aus``.
            au_ids: The AU number of each column of the intensities.

        Raises:
            ValueError: If a class names an AU that is not a column.
        """
        column = {int(au): j for j, au in enumerate(au_ids)}
        vectors = torch.zeros(len(aus), len(column))
        for i, class_aus in enumerate(aus):
            unknown = sorted(set(class_aus) - set(column))
            if unknown:
                raise ValueError(f"AUs {unknown} are not among the data's AU columns {sorted(column)}")
            for au in class_aus:
                vectors[i, column[au]] = self.typical[column[au]]
        return vectors

    def __call__(self, intensities: Tensor) -> Tensor:
        """Features predicted from AU vectors ``(C, A)``, shape ``(C, D)``."""
        return _with_intercept(intensities.float()) @ self.weight


def _with_intercept(values: Tensor) -> Tensor:
    return torch.cat([values, values.new_ones(len(values), 1)], 1)
