"""Batched inference and head training on cached features, against hand computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from cfer.core import EarlyStopping, fit_head, predict


class Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))
        self.sizes: list[int] = []
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        self.modes.append(self.training)
        return x * self.scale


def test_predict_batches_in_order_in_eval_mode_and_restores_the_mode() -> None:
    model = Recorder().train()
    inputs = torch.arange(10.0).unsqueeze(1)
    out = predict(model, inputs, batch_size=4, preprocess=lambda x: x + 1)
    assert torch.equal(out, (inputs + 1) * 2)
    assert model.sizes == [4, 4, 2] and model.modes == [False] * 3 and model.training


def test_predict_reads_datasets_of_tuples_and_callables() -> None:
    inputs = torch.randn(5, 3)
    data = TensorDataset(inputs, torch.zeros(5))
    assert torch.equal(predict(lambda x: x.sum(1), data, batch_size=2), inputs.sum(1))
    assert predict(lambda x: x, torch.empty(0, 3)).numel() == 0


def test_one_full_batch_step_is_plain_gradient_descent_with_the_penalty() -> None:
    generator = torch.Generator().manual_seed(0)
    features, targets = torch.randn(6, 4, generator=generator), torch.tensor([0, 1, 2, 0, 1, 2])
    head = nn.Linear(4, 3)
    weight, bias = head.weight.detach().clone().requires_grad_(), head.bias.detach().clone().requires_grad_()
    loss = F.cross_entropy(features @ weight.T + bias, targets) + 0.5 * weight.pow(2).sum()
    loss.backward()
    history = fit_head(head, features, targets, torch.optim.SGD(head.parameters(), lr=0.1), epochs=1,
                       penalty=lambda: 0.5 * head.weight.pow(2).sum())
    assert torch.allclose(head.weight, weight - 0.1 * weight.grad, atol=1e-6)
    assert torch.allclose(head.bias, bias - 0.1 * bias.grad, atol=1e-6)
    assert history[0]["train_loss"] == pytest.approx(loss.item(), abs=1e-5)
    assert history[0]["val_loss"] is None


def test_minibatches_follow_the_generator_and_early_stopping_ends_training() -> None:
    features, targets = torch.randn(10, 2), torch.randint(0, 2, (10,))
    seen: list[torch.Tensor] = []

    class Spy(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.training:
                seen.append(x)
            return super().forward(x)

    head = Spy(2, 2)
    stopper = EarlyStopping(patience=1)
    stopper.best_loss = -1.0  # nothing can improve on it: one epoch, then stop
    history = fit_head(head, features, targets, torch.optim.SGD(head.parameters(), lr=0.0), epochs=5, batch_size=4,
                       generator=torch.Generator().manual_seed(3), validation=(features, targets), stopper=stopper)
    assert len(history) == 1 and history[0]["val_loss"] is not None
    order = torch.randperm(10, generator=torch.Generator().manual_seed(3))
    assert [len(x) for x in seen] == [4, 4, 2]
    assert torch.equal(torch.cat(seen), features[order])
    with pytest.raises(ValueError, match="validation"):
        fit_head(head, features, targets, torch.optim.SGD(head.parameters(), lr=0.1), 1, stopper=stopper)


def test_a_regression_criterion_takes_float_targets_and_reports_no_accuracy() -> None:
    generator = torch.Generator().manual_seed(0)
    features, targets = torch.randn(6, 4, generator=generator), torch.rand(6, 2, generator=generator)
    head = nn.Linear(4, 2)
    weight = head.weight.detach().clone().requires_grad_()
    loss = F.smooth_l1_loss(features @ weight.T + head.bias.detach(), targets)
    loss.backward()
    history = fit_head(head, features, targets, torch.optim.SGD(head.parameters(), lr=0.1), epochs=1,
                       validation=(features, targets), criterion=F.smooth_l1_loss)
    assert torch.allclose(head.weight, weight - 0.1 * weight.grad, atol=1e-6)
    assert history[0]["train_loss"] == pytest.approx(loss.item(), abs=1e-6)
    assert history[0]["train_accuracy"] is None and history[0]["val_accuracy"] is None
    assert history[0]["val_loss"] == pytest.approx(F.smooth_l1_loss(head(features), targets).item(), abs=1e-6)
