"""Weight imprinting and the cosine classifier, against hand computations on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from cfer.core.imprinting import CosineClassifier, class_means, imprint_weights


def test_imprinted_weight_is_the_normalised_mean_of_normalised_shots() -> None:
    shots = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    labels = torch.tensor([0, 1, 1])
    weights = imprint_weights(shots, labels)
    # class 0: (1, 0); class 1: mean of (0, 1) and (0, 1) = (0, 1)
    assert torch.allclose(weights, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    mixed = imprint_weights(torch.tensor([[3.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    # normalised shots (1, 0) and (0, 1): mean (0.5, 0.5), normalised (1/√2, 1/√2); the raw mean (1.5, 0.5) is not
    assert torch.allclose(mixed, torch.tensor([[1 / math.sqrt(2), 1 / math.sqrt(2)]]))
    raw = imprint_weights(torch.tensor([[3.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]), normalize_inputs=False)
    assert torch.allclose(raw, torch.tensor([[1.5, 0.5]]) / math.sqrt(1.5**2 + 0.5**2))


def test_class_means_by_hand_and_a_class_without_samples_is_an_error() -> None:
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0]])
    assert torch.allclose(class_means(features, torch.tensor([0, 0, 1])), torch.tensor([[2.0, 3.0], [10.0, 0.0]]))
    with pytest.raises(ValueError, match=r"classes \[1\]"):
        class_means(features, torch.tensor([0, 0, 2]))


def test_cosine_classifier_scores_scaled_cosines_and_appends_classes() -> None:
    classifier = CosineClassifier(torch.tensor([[2.0, 0.0]]), scale=10.0)
    classifier.append(torch.tensor([[1.0, 1.0]]))
    assert classifier.num_classes == 2
    logits = classifier(torch.tensor([[0.0, 3.0]]))
    assert torch.allclose(logits, torch.tensor([[0.0, 10.0 / math.sqrt(2)]]))
    # scoring against other rows leaves the stored ones alone
    assert torch.allclose(classifier(torch.tensor([[1.0, 0.0]]), weight=torch.tensor([[0.0, 1.0]])), torch.zeros(1, 1))
    assert classifier.weight.requires_grad and classifier.weight.shape == (2, 2)
