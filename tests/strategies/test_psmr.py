"""Tests of Predictive Sorting Memory Replay: ranking, memory sizes and the storage policy."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
import torch
from avalanche.benchmarks.utils import as_classification_dataset
from avalanche.training.storage_policy import RandomExemplarsSelectionStrategy
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from cfer.core.sorting import predictive_sort
from strategies.psmr import PredictiveSortingSelection, PSMRBuffer


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


def test_predictive_sort_accepts_avalanche_datasets(lookup_model: type) -> None:
    torch.manual_seed(1)
    table = torch.randn(6, 2)
    data = _dataset([5, 3, 1, 0, 2, 4], [0] * 6)
    order = predictive_sort(lookup_model(table), data, class_index=0, batch_size=4)
    ids = _ids(data)
    assert [ids[i] for i in order.tolist()] == _top_by_probability(table, ids, 0, 6)


def _class_ids(buffer: PSMRBuffer) -> dict[int, list[int]]:
    return {class_id: _ids(group.buffer) for class_id, group in buffer.buffer_groups.items()}


def test_grow_mode_keeps_the_top_m_of_each_class_and_grows(lookup_model: type) -> None:
    torch.manual_seed(0)
    table = torch.randn(32, 4)
    model = lookup_model(table)
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


def test_limit_mode_shrinks_stored_classes_without_reranking(lookup_model: type) -> None:
    torch.manual_seed(0)
    basic_table, later_table = torch.randn(32, 4), torch.randn(32, 4)
    buffer = PSMRBuffer(12, mode="limit")
    basic = _dataset(list(range(16)), [0] * 8 + [1] * 8)
    buffer.post_adapt(_strategy(lookup_model(basic_table)), SimpleNamespace(dataset=basic))
    assert buffer.memory_per_class == 6
    assert {c: len(ids) for c, ids in _class_ids(buffer).items()} == {0: 6, 1: 6}

    # a different model learns class 2; the basic classes keep the head of their old ranking
    new_class = _dataset(list(range(16, 24)), [2] * 8)
    buffer.post_adapt(_strategy(lookup_model(later_table)), SimpleNamespace(dataset=new_class))
    assert buffer.memory_per_class == 4
    assert _class_ids(buffer) == {
        0: _top_by_probability(basic_table, list(range(8)), 0, 4),
        1: _top_by_probability(basic_table, list(range(8, 16)), 1, 4),
        2: _top_by_probability(later_table, list(range(16, 24)), 2, 4),
    }
    assert len(buffer.buffer) == 12


def test_random_selection_keeps_the_same_counts(lookup_model: type) -> None:
    buffer = PSMRBuffer(
        8, mode="grow", total_num_classes=4, selection_strategy=RandomExemplarsSelectionStrategy()
    )
    model = lookup_model(torch.zeros(16, 4))
    buffer.post_adapt(
        _strategy(model), SimpleNamespace(dataset=_dataset(list(range(16)), [0] * 8 + [1] * 8))
    )
    assert model.calls == 0
    ids = _class_ids(buffer)
    assert {c: len(v) for c, v in ids.items()} == {0: 2, 1: 2}
    assert set(ids[0]) <= set(range(8)) and set(ids[1]) <= set(range(8, 16))


def test_buffer_keeps_targets_of_the_stored_samples(lookup_model: type) -> None:
    torch.manual_seed(0)
    buffer = PSMRBuffer(8, mode="limit")
    data = _dataset(list(range(12)), [0] * 6 + [1] * 6)
    buffer.post_adapt(_strategy(lookup_model(torch.randn(12, 2))), SimpleNamespace(dataset=data))
    assert sorted(int(t) for t in buffer.buffer.targets) == [0] * 4 + [1] * 4


def test_selection_rejects_mixed_classes_and_bad_options(lookup_model: type) -> None:
    selection = PredictiveSortingSelection()
    with pytest.raises(ValueError):
        selection.make_sorted_indices(
            _strategy(lookup_model(torch.zeros(4, 2))), _dataset([0, 1], [0, 1])
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


def test_state_dict_round_trip_rebuilds_the_same_memory_from_the_source(lookup_model: type) -> None:
    torch.manual_seed(0)
    table = torch.randn(24, 3)
    source = _with_sample_ids(list(range(24)), [0] * 8 + [1] * 8 + [2] * 8)
    buffer = PSMRBuffer(9, mode="limit")
    buffer.post_adapt(_strategy(lookup_model(table)), SimpleNamespace(dataset=source.subset(list(range(16)))))
    buffer.post_adapt(_strategy(lookup_model(table)), SimpleNamespace(dataset=source.subset(list(range(16, 24)))))
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
