"""Every registered strategy trains on a tiny class-incremental stream; the factory validates."""

from __future__ import annotations

import pytest
import torch
from avalanche.benchmarks.scenarios import class_incremental_benchmark
from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark
from avalanche.training import RandomExemplarsSelectionStrategy
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from cfer.models.heads import LinearHead
from strategies.plugins import DistillationPlugin, PSMRReplayPlugin
from strategies.psmr import PredictiveSortingSelection
from strategies.registry import STRATEGIES, CferConfig, create_strategy

class TinyClassifier(nn.Module):
    """Stand-in for cfer.models.ExpressionClassifier: conv backbone + growing head."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.head = LinearHead(4, num_classes)

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def add_classes(self, num_new: int) -> None:
        self.head.add_classes(num_new)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.backbone(images))


def _datasets() -> tuple[TensorDataset, TensorDataset]:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat(4)
    out = []
    for _ in range(2):
        data = TensorDataset(torch.randn(len(labels), 3, 8, 8, generator=generator), labels)
        data.targets = labels.tolist()  # type: ignore[attr-defined]
        out.append(data)
    return out[0], out[1]


def _benchmark(name: str):  # type: ignore[no-untyped-def]
    train, test = _datasets()
    if STRATEGIES[name].scenario == "legacy":
        # Avalanche's iCaRL reads experience.benchmark.n_classes_per_exp / classes_order,
        # which only the legacy generators provide
        return nc_benchmark(
            train,
            test,
            n_experiences=3,
            task_labels=False,
            fixed_class_order=[0, 1, 2, 3],
            per_exp_classes={0: 2},
        )
    return class_incremental_benchmark(
        {"train": train, "test": test}, class_order=[0, 1, 2, 3], num_classes_per_exp=[2, 1, 1]
    )


def _create(name: str, model: nn.Module, **kwargs: object) -> SupervisedTemplate:
    return create_strategy(
        name,
        model,
        torch.optim.SGD(model.parameters(), lr=0.01),
        train_mb_size=4,
        train_epochs=1,
        eval_mb_size=8,
        device="cpu",
        evaluator=EvaluationPlugin(),
        memory_size=8,
        **kwargs,
    )


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_registered_strategy_trains_on_a_tiny_stream(name: str) -> None:
    torch.manual_seed(0)
    benchmark = _benchmark(name)
    kwargs: dict = {"total_num_classes": 4} if STRATEGIES[name].needs_total_classes else {}
    if STRATEGIES[name].hooked_modules is not None:  # the tiny backbone has no EfficientNet blocks
        kwargs["layers"] = ("0:2", "1:1")
    if STRATEGIES[name].needs_class_names:  # classes 2 and 3 are compounds of classes 0 and 1
        kwargs["class_names"] = ("fearful", "surprised", "awed", "fearfully_surprised")
    strategy = _create(name, TinyClassifier(num_classes=2), **kwargs)
    if STRATEGIES[name].offline:
        strategy.train(benchmark.train_stream)
        trained = 1
    else:
        for index, experience in enumerate(benchmark.train_stream):
            strategy.train(experience)
            strategy.eval(benchmark.test_stream[: index + 1])
        trained = 3
    assert strategy.clock.train_exp_counter == trained
    strategy.model.eval()
    images = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        logits = strategy.model(images)
    assert logits.shape[0] == 5
    if name not in {"icarl", "gdumb"}:  # NCM classifier / reset model: no grown head to inspect
        assert logits.shape[1] == 4


def test_cfer_variants_compose_the_expected_plugins() -> None:
    def parts(name: str) -> tuple[bool, type]:
        strategy = _create(name, TinyClassifier(2), total_num_classes=4)
        replay = next(p for p in strategy.plugins if isinstance(p, PSMRReplayPlugin))
        has_kd = any(isinstance(p, DistillationPlugin) for p in strategy.plugins)
        return has_kd, type(replay.storage_policy.selection_strategy)

    assert parts("cfer") == (True, PredictiveSortingSelection)
    assert parts("cfer-no-kd") == (False, PredictiveSortingSelection)
    assert parts("cfer-random-memory") == (True, RandomExemplarsSelectionStrategy)


def test_cfer_defaults_are_the_paper_values() -> None:
    strategy = _create("cfer", TinyClassifier(2), total_num_classes=4)
    distillation = next(p for p in strategy.plugins if isinstance(p, DistillationPlugin))
    replay = next(p for p in strategy.plugins if isinstance(p, PSMRReplayPlugin))
    assert (distillation.initial_weight, distillation.temperature, distillation.teacher_mode) == (
        0.1,
        3.0,
        "basic",
    )
    assert (replay.storage_policy.mode, replay.new_class_samples) == ("grow", "balanced")
    assert CferConfig().initial_weight == distillation.initial_weight


def test_unknown_strategy_lists_known_names() -> None:
    with pytest.raises(KeyError) as error:
        _create("der", TinyClassifier(2))
    for name in STRATEGIES:
        assert repr(name) in str(error.value)


def test_unknown_option_lists_valid_options() -> None:
    with pytest.raises(TypeError) as error:
        _create("lwf", TinyClassifier(2), lambda_=3.0)
    assert "alpha" in str(error.value) and "temperature" in str(error.value)


def test_memory_based_strategies_need_a_memory_size() -> None:
    model = TinyClassifier(2)
    with pytest.raises(ValueError):
        create_strategy(
            "replay",
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            train_mb_size=4,
            train_epochs=1,
            eval_mb_size=4,
            device="cpu",
        )
