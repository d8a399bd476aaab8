"""Fixtures shared by the test packages."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn


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


@pytest.fixture
def lookup_model() -> type[LookupModel]:
    """The class of a stand-in model whose logits are looked up by sample id (``x[:, 0]``)."""
    return LookupModel
