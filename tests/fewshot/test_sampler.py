"""EpisodeSampler: counts, disjointness, determinism, label remapping, too-small classes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cfer.data.dataset import FaceExpressionDataset
from cfer.fewshot import Episode, EpisodeSampler


def grid_dataset(n_classes: int = 6, n_subjects: int = 12, per_pair: int = 1) -> FaceExpressionDataset:
    """One image per (subject, class, copy); pixel 0 encodes the sample position, to trace it."""
    targets = torch.arange(n_classes).repeat_interleave(per_pair).repeat(n_subjects)
    subjects = torch.arange(n_subjects).repeat_interleave(n_classes * per_pair)
    images = torch.zeros(len(targets), 3, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(len(targets)) % 256
    images[:, 1, 0, 0] = torch.arange(len(targets)) // 256
    return FaceExpressionDataset(images, targets, [f"c{i}" for i in range(n_classes)], subjects)


def split(sampler: EpisodeSampler, positions: list[int]) -> tuple[list[int], list[int]]:
    per_class = sampler.n_shot + sampler.n_query
    support = [p for i, p in enumerate(positions) if i % per_class < sampler.n_shot]
    query = [p for i, p in enumerate(positions) if i % per_class >= sampler.n_shot]
    return support, query


@pytest.mark.parametrize("subject_disjoint", [False, True])
def test_counts_and_support_query_disjoint(subject_disjoint):
    dataset = grid_dataset()
    sampler = EpisodeSampler(dataset, n_way=3, n_shot=2, n_query=4, n_episodes=50, subject_disjoint=subject_disjoint)
    assert len(sampler) == 50
    episodes = list(sampler)
    assert len(episodes) == 50
    for positions in episodes:
        assert len(positions) == 3 * (2 + 4) == len(set(positions))  # no image twice, hence not in both sets
        labels = dataset.targets[positions].reshape(3, 6)
        assert (labels == labels[:, :1]).all() and len(set(labels[:, 0].tolist())) == 3
        support, query = split(sampler, positions)
        assert not set(support) & set(query)


def test_subject_disjoint_keeps_people_apart():
    dataset = grid_dataset(n_subjects=10)
    disjoint = EpisodeSampler(dataset, 4, 1, 5, 100, subject_disjoint=True, seed=3)
    for positions in disjoint:
        support, query = split(disjoint, positions)
        assert not set(dataset.subject_ids[support].tolist()) & set(dataset.subject_ids[query].tolist())
    # without the option the same draws do share people: the option is what separates them
    shared = EpisodeSampler(dataset, 4, 1, 5, 100, subject_disjoint=False, seed=3)
    overlaps = 0
    for positions in shared:
        support, query = split(shared, positions)
        overlaps += bool(set(dataset.subject_ids[support].tolist()) & set(dataset.subject_ids[query].tolist()))
    assert overlaps > 0


def test_deterministic_for_a_seed_and_independent_of_length():
    dataset = grid_dataset()
    first = list(EpisodeSampler(dataset, 3, 1, 2, 20, seed=7))
    assert first == list(EpisodeSampler(dataset, 3, 1, 2, 20, seed=7))
    assert first[:5] == list(EpisodeSampler(dataset, 3, 1, 2, 5, seed=7))
    assert first != list(EpisodeSampler(dataset, 3, 1, 2, 20, seed=8))
    sampler = EpisodeSampler(dataset, 3, 1, 2, 20, seed=7)
    assert list(sampler) == list(sampler)  # iterating again replays the same episodes


def test_classes_restrict_the_pool():
    dataset = grid_dataset()
    sampler = EpisodeSampler(dataset, 2, 1, 1, 30, classes=[3, 4, 5])
    drawn = {int(dataset.targets[p]) for positions in sampler for p in positions}
    assert drawn == {3, 4, 5}


def test_collate_remaps_labels_and_keeps_class_ids():
    dataset = grid_dataset()
    sampler = EpisodeSampler(dataset, n_way=3, n_shot=2, n_query=3, n_episodes=4, seed=1)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=sampler.episodic_collate_fn)
    for positions, episode in zip(sampler, loader):
        assert isinstance(episode, Episode)
        support_images, support_labels, query_images, query_labels, class_ids = episode  # easyfsl's 5-tuple
        assert support_images.shape == (6, 3, 4, 4) and query_images.shape == (9, 3, 4, 4)
        assert support_labels.tolist() == [0, 0, 1, 1, 2, 2]
        assert query_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
        # episode-local label j is dataset class class_ids[j], image by image
        traced = torch.cat([support_images, query_images])
        traced_positions = (traced[:, 0, 0, 0].long() + 256 * traced[:, 1, 0, 0].long()).tolist()
        local = torch.cat([support_labels, query_labels])
        assert dataset.targets[traced_positions].tolist() == [class_ids[j] for j in local.tolist()]
        assert sorted(traced_positions) == sorted(positions)


def test_collate_rejects_items_out_of_layout():
    dataset = grid_dataset()
    sampler = EpisodeSampler(dataset, 2, 1, 1, 1)
    items = [dataset[p] for p in next(iter(sampler))]
    with pytest.raises(ValueError, match="expected 4 items"):
        sampler.episodic_collate_fn(items[:3])
    with pytest.raises(ValueError, match="class by class"):
        sampler.episodic_collate_fn([items[0], items[2], items[1], items[3]])


def test_too_few_samples_error_names_the_class():
    targets = torch.tensor([0] * 5 + [1] * 5 + [2] * 2)
    samples = SimpleNamespace(targets=targets, subject_ids=torch.arange(12))
    with pytest.raises(ValueError, match="class 2: 2"):
        EpisodeSampler(samples, 2, 1, 2, 10)


def test_too_few_samples_skip_warns_and_never_draws_it():
    targets = torch.tensor([0] * 5 + [1] * 5 + [2] * 2)
    samples = SimpleNamespace(targets=targets, subject_ids=torch.arange(12))
    with pytest.warns(UserWarning, match="skipping"):
        sampler = EpisodeSampler(samples, 2, 1, 2, 10, on_too_few="skip")
    assert sampler.class_ids == [0, 1]
    assert all(int(targets[p]) != 2 for positions in sampler for p in positions)
    with pytest.raises(ValueError, match="fewer than n_way"), pytest.warns(UserWarning):
        EpisodeSampler(samples, 3, 1, 2, 10, on_too_few="skip")


def test_subject_disjoint_counts_distinct_subjects():
    # 6 images of class 0 but from 2 people: enough samples, too few people for 1 + 2 disjoint
    targets = torch.tensor([0] * 6 + [1] * 6)
    subjects = torch.tensor([0, 0, 0, 1, 1, 1, 0, 1, 2, 3, 4, 5])
    samples = SimpleNamespace(targets=targets, subject_ids=subjects)
    EpisodeSampler(samples, 2, 1, 2, 1)  # fine when people may repeat
    with pytest.raises(ValueError, match="distinct subjects"):
        EpisodeSampler(samples, 2, 1, 2, 1, subject_disjoint=True)


def test_rejects_bad_counts():
    with pytest.raises(ValueError, match="n_shot"):
        EpisodeSampler(grid_dataset(), 2, 0, 1, 1)
    with pytest.raises(ValueError, match="on_too_few"):
        EpisodeSampler(grid_dataset(), 2, 1, 1, 1, on_too_few="drop")  # type: ignore[arg-type]


def test_works_on_numpy_labels():
    samples = SimpleNamespace(targets=np.repeat(np.arange(4), 3), subject_ids=np.tile(np.arange(3), 4))
    assert len(next(iter(EpisodeSampler(samples, 4, 1, 1, 1)))) == 8
