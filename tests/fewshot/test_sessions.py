"""SessionSampler's invariants: disjoint shots, held-out subjects never used, determinism, nesting."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cfer.fewshot import SessionSampler


def grid(n_classes: int = 8, n_subjects: int = 12) -> SimpleNamespace:
    """One image per (subject, class): position p is subject p // n_classes, class p % n_classes."""
    return SimpleNamespace(targets=torch.arange(n_classes).repeat(n_subjects),
                           subject_ids=torch.arange(n_subjects).repeat_interleave(n_classes))


NEW = [2, 3, 4, 5, 6, 7]
HELD_OUT = [9, 10, 11]


def test_sessions_cover_every_new_class_once_with_k_distinct_shots_each():
    samples = grid()
    sampler = SessionSampler(samples, NEW, n_way=2, n_shot=3, exclude_subjects=HELD_OUT, seed=0)
    sessions = sampler.sessions(order=0, shot_seed=0)
    assert sampler.num_sessions == 3 and [s.index for s in sessions] == [1, 2, 3]
    assert sorted(c for s in sessions for c in s.classes) == NEW
    positions = [p for s in sessions for p in s.support]
    assert len(positions) == len(set(positions)) == 6 * 3  # no image is a shot twice
    for session in sessions:
        labels = samples.targets[session.support].tolist()
        assert labels == [c for c in session.classes for _ in range(3)]  # laid out class by class


def test_shots_never_come_from_excluded_subjects():
    samples = grid()
    sampler = SessionSampler(samples, NEW, n_way=1, n_shot=5, exclude_subjects=HELD_OUT, seed=4)
    for order in range(4):
        for shot_seed in range(4):
            subjects = {int(samples.subject_ids[p]) for s in sampler.sessions(order, shot_seed) for p in s.support}
            assert not subjects & set(HELD_OUT)
    with pytest.raises(ValueError, match="fewer than n_shot"):
        SessionSampler(samples, NEW, n_way=1, n_shot=10, exclude_subjects=HELD_OUT)  # 9 subjects left


def test_runs_are_a_function_of_order_and_seed_only():
    samples = grid()
    sampler = SessionSampler(samples, NEW, n_way=1, n_shot=2, seed=1)
    assert sampler.sessions(1, 2) == SessionSampler(samples, NEW, n_way=1, n_shot=2, seed=1).sessions(1, 2)
    assert sampler.order(0) != sampler.order(1)  # orders differ
    assert [s.classes for s in sampler.sessions(0, 0)] == [s.classes for s in sampler.sessions(0, 5)]  # seeds share them

    def shots_by_class(order: int, shot_seed: int) -> dict[int, list[int]]:
        return {s.classes[0]: s.support for s in sampler.sessions(order, shot_seed)}

    assert shots_by_class(0, 3) == shots_by_class(2, 3)  # a class's shots do not depend on the order
    assert shots_by_class(0, 0) != shots_by_class(0, 1)  # seeds draw other shots
    assert SessionSampler(samples, NEW, 1, 2, seed=2).sessions(0, 0) != sampler.sessions(0, 0)


def test_one_shot_is_among_the_five_of_the_same_seed():
    samples = grid()
    one = SessionSampler(samples, NEW, 1, 1, seed=0).sessions(0, 1)
    five = SessionSampler(samples, NEW, 1, 5, seed=0).sessions(0, 1)
    assert all(a.support[0] in b.support for a, b in zip(one, five))


def test_bad_session_layouts_are_refused():
    with pytest.raises(ValueError, match="does not divide"):
        SessionSampler(grid(), NEW, n_way=4, n_shot=1)
    with pytest.raises(ValueError, match="at least 1"):
        SessionSampler(grid(), NEW, n_way=1, n_shot=0)
    samples = SimpleNamespace(targets=np.repeat(np.arange(3), 4), subject_ids=np.tile(np.arange(4), 3))
    assert len(SessionSampler(samples, [1, 2], 1, 2).sessions(0, 0)) == 2  # numpy labels work too
