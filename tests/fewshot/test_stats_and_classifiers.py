"""The 95% interval against a hand computation, and the episode classifiers."""

from __future__ import annotations

import math

import pytest
import torch

from cfer.fewshot import (
    EPISODE_CLASSIFIERS,
    FeatureSet,
    create_episode_classifier,
    evaluate_episodes,
    mean_ci,
)


def test_mean_ci_matches_hand_computation():
    values = [0.6, 0.8, 0.7, 0.9]
    mean = 0.75
    sample_std = math.sqrt(((-0.15) ** 2 + 0.05**2 + (-0.05) ** 2 + 0.15**2) / 3)  # ddof = 1
    result = mean_ci(values)
    assert result.mean == pytest.approx(mean)
    assert result.ci95 == pytest.approx(1.96 * sample_std / 2)
    assert result.ci95 == pytest.approx(0.1265, abs=1e-4)
    assert result.n == 4


def test_mean_ci_edge_cases():
    assert mean_ci([0.5]) == (0.5, 0.0, 1)
    assert mean_ci([0.3, 0.3, 0.3]).ci95 == 0.0
    with pytest.raises(ValueError):
        mean_ci([])


def separable_features(n_classes: int = 4, per_class: int = 12, noise: float = 0.1) -> FeatureSet:
    generator = torch.Generator().manual_seed(0)
    centres = torch.eye(n_classes, 8) * 3
    targets = torch.arange(n_classes).repeat_interleave(per_class)
    features = centres[targets] + noise * torch.randn(len(targets), 8, generator=generator)
    subjects = torch.arange(per_class).repeat(n_classes)
    return FeatureSet(features, targets, subjects, tuple(f"c{i}" for i in range(n_classes)))


@pytest.mark.parametrize("name", sorted(EPISODE_CLASSIFIERS))
def test_every_classifier_solves_separable_episodes(name):
    result = evaluate_episodes(separable_features(), n_way=3, n_shot=1, n_query=3, episodes=20, classifier=name)
    assert result["mean"] == 1.0 and result["ci95"] == 0.0


@pytest.mark.parametrize("name", sorted(EPISODE_CLASSIFIERS))
def test_every_classifier_is_at_chance_on_noise(name):
    features = separable_features(noise=0.0)
    noise = FeatureSet(torch.randn(features.features.shape, generator=torch.Generator().manual_seed(1)),
                       features.targets, features.subject_ids, features.classes)
    result = evaluate_episodes(noise, n_way=4, n_shot=1, n_query=5, episodes=40, classifier=name)  # 800 queries: sd 0.015
    assert abs(result["mean"] - 0.25) < 0.1


def test_prototype_is_nearest_class_mean():
    classifier = create_episode_classifier("prototype", normalize=False)
    classifier.fit(torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0]]), torch.tensor([0, 0, 1]))
    # class means 1 and 10: 5.4 is nearer 1, 5.6 nearer 10
    assert classifier.predict(torch.tensor([[5.4, 0.0], [5.6, 0.0]])).tolist() == [0, 1]


def test_unknown_classifier_lists_known_ones():
    with pytest.raises(KeyError, match="linear.*prototype"):
        create_episode_classifier("svm")


def test_linear_probe_gradient_matches_autograd():
    # one SGD step with weight decay on W only equals a hand-derived step on CE + weight_decay/2 |W|^2
    from cfer.fewshot import LinearProbe

    generator = torch.Generator().manual_seed(0)
    features, labels = torch.randn(6, 4, generator=generator), torch.tensor([0, 0, 1, 1, 2, 2])
    probe = LinearProbe(steps=1, lr=0.3, weight_decay=0.1, normalize=False)
    probe.fit(features, labels)
    prototypes = torch.stack([features[labels == c].mean(0) for c in range(3)])
    weight = (2 * prototypes).requires_grad_()
    bias = (-prototypes.pow(2).sum(1)).requires_grad_()
    loss = torch.nn.functional.cross_entropy(features @ weight.T + bias, labels) + 0.05 * weight.pow(2).sum()
    loss.backward()
    assert torch.allclose(probe.layer.weight, weight - 0.3 * weight.grad, atol=1e-6)
    assert torch.allclose(probe.layer.bias, bias - 0.3 * bias.grad, atol=1e-6)
