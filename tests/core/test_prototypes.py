"""Class means, RanPAC's ridge head and weight aligning, against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cfer.core.prototypes import ClassMeans, RandomProjectionRidge, align_weights, ridge_errors


def test_class_means_score_the_cosine_to_each_class_mean() -> None:
    features = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    labels = torch.tensor([0, 0, 2, 2])
    head = ClassMeans(2)
    head.update(features[:2], labels[:2])
    head.update(features[2:], labels[2:])  # in two steps, as a stream gives them
    assert head.num_classes == 3
    assert torch.allclose(head.means, torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.5, 1.5]]))
    query = torch.tensor([[1.0, 1.0]])
    expected = [1 / math.sqrt(2), 0.0, (0.5 + 1.5) / (math.sqrt(2) * math.sqrt(0.25 + 2.25))]
    assert torch.allclose(head(query), torch.tensor([expected]))


def test_ridge_head_is_the_closed_form_of_its_accumulated_statistics() -> None:
    generator = torch.Generator().manual_seed(0)
    features, labels = torch.randn(30, 5, generator=generator), torch.randint(0, 3, (30,), generator=generator)
    head = RandomProjectionRidge(5, projection_dim=7, ridge=0.5, seed=1)
    for chunk in range(3):  # three experiences
        head.update(features[chunk * 10:(chunk + 1) * 10], labels[chunk * 10:(chunk + 1) * 10])
    projection = torch.randn(5, 7, generator=torch.Generator().manual_seed(1)).numpy().astype(np.float64)
    h = np.maximum(features.numpy().astype(np.float64) @ projection, 0)
    y = np.eye(3)[labels.numpy()]
    weight = np.linalg.solve(h.T @ h + 0.5 * np.eye(7), h.T @ y)
    assert np.allclose(head.weight.numpy(), weight, atol=1e-4)
    assert torch.allclose(head(features), torch.from_numpy(h @ weight).float(), atol=1e-3)


def test_ridge_is_chosen_from_the_candidates_on_held_out_samples() -> None:
    generator = torch.Generator().manual_seed(2)
    centers = torch.randn(3, 4, generator=generator) * 3
    labels = torch.arange(3).repeat(40)
    features = centers[labels] + 0.1 * torch.randn(120, 4, generator=generator)
    head = RandomProjectionRidge(4, projection_dim=50, seed=0)
    head.update(features, labels)
    chosen = head.choose_ridge(features, labels, candidates=(1e-3, 1.0, 1e9))
    assert chosen in (1e-3, 1.0)  # an enormous ridge predicts zeros: the worst squared error
    assert (head(features).argmax(1) == labels).float().mean() > 0.95


@pytest.mark.parametrize("samples", [6, 40])  # fewer samples than dimensions (the dual form), then more
def test_ridge_errors_are_those_of_each_direct_solution(samples: int) -> None:
    generator = np.random.default_rng(samples)
    h_fit, h_score = np.maximum(generator.normal(size=(samples, 12)), 0), np.maximum(generator.normal(size=(9, 12)), 0)
    y_fit, y_score = np.eye(3)[generator.integers(0, 3, samples)], np.eye(3)[generator.integers(0, 3, 9)]
    candidates = (1e-2, 1.0, 30.0)
    expected = [np.mean((h_score @ np.linalg.solve(h_fit.T @ h_fit + ridge * np.eye(12), h_fit.T @ y_fit) - y_score) ** 2)
                for ridge in candidates]
    errors = ridge_errors(*(torch.from_numpy(a) for a in (h_fit, y_fit, h_score, y_score)), candidates)
    assert np.allclose(errors, expected, rtol=1e-6)


def test_weight_aligning_scales_the_new_rows_to_the_old_mean_norm() -> None:
    layer = nn.Linear(2, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0]]))  # norms 5, 1 | 10
        layer.bias.copy_(torch.tensor([0.0, 0.0, 2.0]))
    factor = align_weights(layer, 1)
    assert factor == pytest.approx(3.0 / 10.0)
    assert torch.allclose(layer.weight[2], torch.tensor([1.8, 2.4]))
    assert torch.allclose(layer.bias, torch.tensor([0.0, 0.0, 0.6]))
    assert torch.equal(layer.weight[:2], torch.tensor([[3.0, 4.0], [0.0, 1.0]]))
    assert F.normalize(layer.weight[2:], dim=1).allclose(torch.tensor([[0.6, 0.8]]))


def test_ridge_scored_on_other_samples_fits_every_given_one_and_keeps_the_least_error_on_those() -> None:
    generator = torch.Generator().manual_seed(3)
    centers = torch.randn(3, 4, generator=generator)
    labels, scored_labels = torch.arange(3).repeat(20), torch.arange(3).repeat(10)
    features = centers[labels] + 0.05 * torch.randn(60, 4, generator=generator)  # tight: its own fifth likes a small λ
    scored = centers[scored_labels] + 1.0 * torch.randn(30, 4, generator=generator)  # other subjects: far noisier
    candidates = (1e-4, 1e-1, 1e2, 1e5)
    head = RandomProjectionRidge(4, projection_dim=40, seed=0)
    head.update(features, labels)
    chosen = head.choose_ridge(features, labels, candidates=candidates, scored=(scored, scored_labels))
    projection = torch.randn(4, 40, generator=torch.Generator().manual_seed(0)).double().numpy()
    h, h_scored = (np.maximum(x.double().numpy() @ projection, 0) for x in (features, scored))
    y, y_scored = np.eye(3)[labels.numpy()], np.eye(3)[scored_labels.numpy()]
    errors = [np.mean((h_scored @ np.linalg.solve(h.T @ h + ridge * np.eye(40), h.T @ y) - y_scored) ** 2)
              for ridge in candidates]
    assert chosen == candidates[int(np.argmin(errors))]
    assert np.allclose(head.weight.double().numpy(), np.linalg.solve(h.T @ h + chosen * np.eye(40), h.T @ y), atol=1e-4)
    own = RandomProjectionRidge(4, projection_dim=40, seed=0)
    own.update(features, labels)
    assert own.choose_ridge(features, labels, candidates=candidates) < chosen  # the noisier scored set asks for more
