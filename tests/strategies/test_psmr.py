"""Tests of Predictive Sorting Memory Replay: ranking, memory sizes and the storage policy."""

from __future__ import annotations

import io
import math
from types import SimpleNamespace

import pytest
import torch
from avalanche.benchmarks.utils import as_classification_dataset
from avalanche.training.storage_policy import RandomExemplarsSelectionStrategy
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from strategies.psmr import (
    PredictiveSortingSelection,
    PSMRBuffer,
    memory_per_class,
    predictive_sort,
    representative_memory_size,
    sample_per_class,
)


class LookupModel(nn.Module):
    """Stand-in model: input ``x[:, 0]`` is a sample id; the logits are row ``id`` of a table."""

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the model a device
        self.calls = 0
        self.modes: list[bool] = []

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        self.modes.append(self.training)
        return self.table[x[:, 0].long()] + 0 * self.anchor


def _dataset(ids: list[int], labels: list[int]):  # type: ignore[no-untyped-def]
    inputs = torch.tensor(ids, dtype=torch.float32).unsqueeze(1)
    tensors = TensorDataset(inputs, torch.tensor(labels))
    tensors.targets = labels  # type: ignore[attr-defined]
    return as_classification_dataset(tensors)


def _ids(data) -> list[int]:  # type: ignore[no-untyped-def]
    return [int(sample[0][0]) for sample in data]


def _top_by_probability(table: Tensor, ids: list[int], class_index: int, count: int) -> list[int]:
    probabilities = torch.softmax(table[ids], dim=1)[:, class_index].tolist()
    ranked = sorted(zip(probabilities, ids), key=lambda pair: -pair[0])
    return [sample_id for _, sample_id in ranked[:count]]


def _strategy(model: nn.Module) -> SimpleNamespace:
    return SimpleNamespace(model=model, device="cpu", eval_mb_size=4)


def test_predictive_sort_ranks_by_probability_in_one_batched_pass() -> None:
    torch.manual_seed(0)
    table = torch.randn(10, 3)
    model = LookupModel(table).train()
    order = predictive_sort(model, torch.arange(10.0).unsqueeze(1), class_index=1, batch_size=4)
    assert order.tolist() == _top_by_probability(table, list(range(10)), 1, 10)
    assert model.calls == math.ceil(10 / 4)
    assert model.modes == [False] * model.calls  # inference in eval mode...
    assert model.training  # ...and the caller's mode restored


def test_probability_and_logit_scores_differ_as_documented() -> None:
    # sample 0 has the larger class-0 logit, sample 1 the larger class-0 probability
    table = torch.tensor([[2.0, 5.0, 5.0], [1.0, -5.0, -5.0]])
    inputs = torch.tensor([[0.0], [1.0]])
    model = LookupModel(table)
    assert predictive_sort(model, inputs, 0, score="probability").tolist() == [1, 0]
    assert predictive_sort(model, inputs, 0, score="logit").tolist() == [0, 1]
    with pytest.raises(ValueError):
        predictive_sort(model, inputs, 0, score="margin")  # type: ignore[arg-type]


def test_predictive_sort_accepts_avalanche_datasets() -> None:
    torch.manual_seed(1)
    table = torch.randn(6, 2)
    data = _dataset([5, 3, 1, 0, 2, 4], [0] * 6)
    order = predictive_sort(LookupModel(table), data, class_index=0, batch_size=4)
    ids = _ids(data)
    assert [ids[i] for i in order.tolist()] == _top_by_probability(table, ids, 0, 6)


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


def _class_ids(buffer: PSMRBuffer) -> dict[int, list[int]]:
    return {class_id: _ids(group.buffer) for class_id, group in buffer.buffer_groups.items()}


def test_grow_mode_keeps_the_top_m_of_each_class_and_grows() -> None:
    torch.manual_seed(0)
    table = torch.randn(32, 4)
    model = LookupModel(table)
    buffer = PSMRBuffer(12, mode="grow", total_num_classes=4)
    basic = _dataset(list(range(16)), [0] * 8 + [1] * 8)
    buffer.post_adapt(_strategy(model), SimpleNamespace(dataset=basic))
    assert buffer.memory_per_class == 3
    expected = {
        0: _top_by_probability(table, list(range(8)), 0, 3),
        1: _top_by_probability(table, list(range(8, 16)), 1, 3),
    }
    assert _class_ids(buffer) == expected
    buffer.post_adapt(
        _strategy(model), SimpleNamespace(dataset=_dataset(list(range(16, 24)), [2] * 8))
    )
    expected[2] = _top_by_probability(table, list(range(16, 24)), 2, 3)
    assert _class_ids(buffer) == expected
    assert len(buffer.buffer) == 9


def test_limit_mode_shrinks_stored_classes_without_reranking() -> None:
    torch.manual_seed(0)
    basic_table, later_table = torch.randn(32, 4), torch.randn(32, 4)
    buffer = PSMRBuffer(12, mode="limit")
    basic = _dataset(list(range(16)), [0] * 8 + [1] * 8)
    buffer.post_adapt(_strategy(LookupModel(basic_table)), SimpleNamespace(dataset=basic))
    assert buffer.memory_per_class == 6
    assert {c: len(ids) for c, ids in _class_ids(buffer).items()} == {0: 6, 1: 6}

    # a different model learns class 2; the basic classes keep the head of their old ranking
    new_class = _dataset(list(range(16, 24)), [2] * 8)
    buffer.post_adapt(_strategy(LookupModel(later_table)), SimpleNamespace(dataset=new_class))
    assert buffer.memory_per_class == 4
    assert _class_ids(buffer) == {
        0: _top_by_probability(basic_table, list(range(8)), 0, 4),
        1: _top_by_probability(basic_table, list(range(8, 16)), 1, 4),
        2: _top_by_probability(later_table, list(range(16, 24)), 2, 4),
    }
    assert len(buffer.buffer) == 12


def test_random_selection_keeps_the_same_counts() -> None:
    buffer = PSMRBuffer(
        8, mode="grow", total_num_classes=4, selection_strategy=RandomExemplarsSelectionStrategy()
    )
    model = LookupModel(torch.zeros(16, 4))
    buffer.post_adapt(
        _strategy(model), SimpleNamespace(dataset=_dataset(list(range(16)), [0] * 8 + [1] * 8))
    )
    assert model.calls == 0
    ids = _class_ids(buffer)
    assert {c: len(v) for c, v in ids.items()} == {0: 2, 1: 2}
    assert set(ids[0]) <= set(range(8)) and set(ids[1]) <= set(range(8, 16))


def test_buffer_keeps_targets_of_the_stored_samples() -> None:
    torch.manual_seed(0)
    buffer = PSMRBuffer(8, mode="limit")
    data = _dataset(list(range(12)), [0] * 6 + [1] * 6)
    buffer.post_adapt(_strategy(LookupModel(torch.randn(12, 2))), SimpleNamespace(dataset=data))
    assert sorted(int(t) for t in buffer.buffer.targets) == [0] * 4 + [1] * 4


def test_selection_rejects_mixed_classes_and_bad_options() -> None:
    selection = PredictiveSortingSelection()
    with pytest.raises(ValueError):
        selection.make_sorted_indices(
            _strategy(LookupModel(torch.zeros(4, 2))), _dataset([0, 1], [0, 1])
        )
    with pytest.raises(ValueError):
        PredictiveSortingSelection(score="entropy")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PSMRBuffer(10, mode="grow")
    with pytest.raises(ValueError):
        PSMRBuffer(10, mode="shrink")  # type: ignore[arg-type]


def _with_sample_ids(ids: list[int], labels: list[int]):  # type: ignore[no-untyped-def]
    data = _dataset(ids, labels)
    # sample ids deliberately differ from positions, as in a subset of a larger split
    return data.update_data_attribute("sample_id", [100 + i for i in ids])


def test_state_dict_round_trip_rebuilds_the_same_memory_from_the_source() -> None:
    torch.manual_seed(0)
    table = torch.randn(24, 3)
    source = _with_sample_ids(list(range(24)), [0] * 8 + [1] * 8 + [2] * 8)
    buffer = PSMRBuffer(9, mode="limit")
    buffer.post_adapt(_strategy(LookupModel(table)), SimpleNamespace(dataset=source.subset(list(range(16)))))
    buffer.post_adapt(_strategy(LookupModel(table)), SimpleNamespace(dataset=source.subset(list(range(16, 24)))))
    state = buffer.state_dict()
    assert [group["class_id"] for group in state["groups"]] == [0, 1, 2]
    assert all(group["sample_ids"].dtype == torch.long for group in state["groups"])

    # the state survives torch.save / weights-only load
    stream = io.BytesIO()
    torch.save(state, stream)
    stream.seek(0)
    loaded = torch.load(stream, weights_only=True)

    restored = PSMRBuffer(1, mode="limit")
    restored.load_state_dict(loaded, source)
    assert _class_ids(restored) == _class_ids(buffer)
    assert restored.max_size == buffer.max_size and restored.memory_per_class == buffer.memory_per_class
    assert sorted(int(t) for t in restored.buffer.targets) == sorted(int(t) for t in buffer.buffer.targets)

    with pytest.raises(ValueError, match="not in the source"):
        PSMRBuffer(1, mode="limit").load_state_dict(loaded, source.subset(list(range(8))))
    with pytest.raises(ValueError, match="mode"):
        PSMRBuffer(1, mode="grow", total_num_classes=3).load_state_dict(loaded, source)
