"""Predictive sorting and the PSMR memory budget (plain PyTorch) against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from cfer.core.sorting import (
    memory_per_class,
    predictive_sort,
    representative_memory_size,
    sample_per_class,
    sort_by_score,
)


def _top_by_probability(table: Tensor, ids: list[int], class_index: int, count: int) -> list[int]:
    probabilities = torch.softmax(table[ids], dim=1)[:, class_index].tolist()
    ranked = sorted(zip(probabilities, ids), key=lambda pair: -pair[0])
    return [sample_id for _, sample_id in ranked[:count]]


def test_predictive_sort_ranks_by_probability_in_one_batched_pass(lookup_model: type) -> None:
    torch.manual_seed(0)
    table = torch.randn(10, 3)
    model = lookup_model(table).train()
    order = predictive_sort(model, torch.arange(10.0).unsqueeze(1), class_index=1, batch_size=4)
    assert order.tolist() == _top_by_probability(table, list(range(10)), 1, 10)
    assert model.calls == math.ceil(10 / 4)
    assert model.modes == [False] * model.calls  # inference in eval mode...
    assert model.training  # ...and the caller's mode restored


def test_probability_and_logit_scores_differ_as_documented(lookup_model: type) -> None:
    # sample 0 has the larger class-0 logit, sample 1 the larger class-0 probability
    table = torch.tensor([[2.0, 5.0, 5.0], [1.0, -5.0, -5.0]])
    inputs = torch.tensor([[0.0], [1.0]])
    model = lookup_model(table)
    assert predictive_sort(model, inputs, 0, score="probability").tolist() == [1, 0]
    assert predictive_sort(model, inputs, 0, score="logit").tolist() == [0, 1]
    with pytest.raises(ValueError):
        predictive_sort(model, inputs, 0, score="margin")  # type: ignore[arg-type]


def test_sort_by_score_is_stable_for_ties() -> None:
    logits = torch.tensor([[1.0, 2.0], [0.0, 0.0], [1.0, 2.0], [3.0, -1.0]])
    # probabilities of class 1: 0.731, 0.5, 0.731, 0.018 -> ties keep input order
    assert sort_by_score(logits, 1).tolist() == [0, 2, 1, 3]
    assert sort_by_score(torch.empty(0, 2), 0).tolist() == []


@pytest.mark.parametrize("n_train", [0, 9, 10, 70, 233, 1000, 1231])
@pytest.mark.parametrize("n_classes", [7, 22])
def test_memory_sizes_follow_the_reference_integer_arithmetic(n_train: int, n_classes: int) -> None:
    budget = n_train * 3 // 10  # reference: math.floor(len(train_file_list) * 3 / 10)
    assert representative_memory_size(n_train) == budget
    assert memory_per_class(n_train, n_classes) == budget // n_classes


def test_sample_per_class_keeps_at_most_the_quota_of_each_class() -> None:
    targets = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2])
    kept = sample_per_class(targets, 2, torch.Generator().manual_seed(0))
    assert len(set(kept.tolist())) == len(kept)
    counts = torch.bincount(targets[kept], minlength=3).tolist()
    assert counts == [2, 2, 2]
    assert torch.bincount(targets[sample_per_class(targets, 10)]).tolist() == [4, 2, 3]
