"""The registered variants of cfer do what their entries say: weight aligning, exemplar means, fresh optimizer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from avalanche.benchmarks.scenarios import class_incremental_benchmark
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from cfer.core.inference import predict
from cfer.models.heads import LinearHead
from strategies import create_strategy
from strategies.plugins import (
    ExemplarHeadPlugin,
    PSMRReplayPlugin,
    WeightAligningPlugin,
)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU())
        self.head = LinearHead(6, 2)

    num_classes = property(lambda self: self.head.num_classes)

    def add_classes(self, num_new: int) -> None:
        self.head.add_classes(num_new)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))


def _stream():  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat(10)
    data = {}
    for split in ("train", "test"):
        dataset = TensorDataset(torch.randn(40, 3, 2, 2, generator=generator) + labels.view(-1, 1, 1, 1), labels)
        dataset.targets = labels.tolist()  # type: ignore[attr-defined]
        data[split] = dataset
    return class_incremental_benchmark(data, class_order=[0, 1, 2, 3], num_classes_per_exp=[2, 1, 1])


def _strategy(name: str, plugins=()):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = Tiny()
    return create_strategy(name, model, torch.optim.Adam(model.parameters(), 1e-2), train_mb_size=8, train_epochs=2,
                           eval_mb_size=16, device="cpu", evaluator=EvaluationPlugin(loggers=[]), plugins=list(plugins),
                           memory_size=12, total_num_classes=4)


def _plugin(strategy, kind):  # type: ignore[no-untyped-def]
    return next(p for p in strategy.plugins if isinstance(p, kind))


def test_weight_aligning_leaves_the_new_row_at_the_old_rows_mean_norm() -> None:
    strategy = _strategy("cfer-wa")
    for experience in _stream().train_stream:
        strategy.train(experience)
        norms = strategy.model.head.fc.weight.norm(dim=1)
        if strategy.clock.train_exp_counter > 1:
            assert torch.allclose(norms[-1], norms[:-1].mean(), rtol=1e-5)
    assert len(_plugin(strategy, WeightAligningPlugin).factors) == 2  # the first experience has no old classes


def test_exemplar_means_classify_by_the_memorys_class_means_only_when_evaluating() -> None:
    strategy = _strategy("cfer-ncm")
    stream = _stream()
    for experience in stream.train_stream:
        strategy.train(experience)
    buffer = _plugin(strategy, PSMRReplayPlugin).storage_policy.buffer.eval()
    features = predict(strategy.model.backbone, buffer)
    targets = torch.as_tensor(list(buffer.targets))
    means = torch.stack([features[targets == c].mean(0) for c in range(4)])
    inputs = torch.stack([stream.test_stream[0].dataset[i][0] for i in range(4)])
    expected = F.normalize(predict(strategy.model.backbone, inputs), dim=1) @ F.normalize(means, dim=1).T
    seen: list[Tensor] = []

    class Capture(SupervisedPlugin):
        def after_eval_forward(self, strategy, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(strategy.mb_output)

    strategy.plugins.append(Capture())
    strategy.eval(stream.test_stream[0])
    assert torch.allclose(seen[0][:4], expected, atol=1e-5)
    assert strategy.model.head is not None and isinstance(_plugin(strategy, ExemplarHeadPlugin).head.means, Tensor)


def test_fresh_optimizer_starts_each_step_without_state() -> None:
    states: list[int] = []

    class Probe(SupervisedPlugin):
        def before_training_epoch(self, strategy, **kwargs):  # type: ignore[no-untyped-def]
            if strategy.clock.train_exp_epochs == 0:
                states.append(len(strategy.optimizer.state))

    strategy = _strategy("cfer-fresh-optimizer", [Probe()])
    for experience in _stream().train_stream:
        strategy.train(experience)
    assert states == [0, 0, 0]
    carried: list[int] = []
    states.clear()
    strategy = _strategy("cfer", [Probe()])
    for experience in _stream().train_stream:
        strategy.train(experience)
    carried = states
    assert carried[0] == 0 and carried[1] > 0  # the paper's strategy carries Adam's moments over
