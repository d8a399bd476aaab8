"""The resume file's random-generator state round-trips through weights_only loading."""

from __future__ import annotations

import io
import random

import numpy as np
import torch

from strategies.checkpoint import rng_state, seed_everything, set_rng_state


def test_rng_state_survives_a_weights_only_round_trip() -> None:
    seed_everything(7)
    buffer = io.BytesIO()
    torch.save(rng_state(), buffer)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    buffer.seek(0)
    set_rng_state(torch.load(buffer, weights_only=True))
    actual = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(actual[0], expected[0])
    assert np.array_equal(actual[1], expected[1])
    assert actual[2] == expected[2]


def test_seed_everything_seeds_every_generator() -> None:
    seed_everything(3)
    first = (torch.rand(1).item(), np.random.rand(), random.random())
    seed_everything(3)
    assert (torch.rand(1).item(), np.random.rand(), random.random()) == first
