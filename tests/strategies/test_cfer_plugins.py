"""End-to-end run of the 'cfer' strategy on a tiny class-incremental stream.

Checks that every hook the cfer plugins implement fires, that the head grows by one unit per
experience, that training data and memory hold the expected per-class counts, and that the loss
terms the plugins add equal hand computations with an independent snapshot of the basic model.
"""

from __future__ import annotations

import copy
import math
from collections import Counter, defaultdict
from typing import Any, Callable

import pytest
import torch
import torch.nn.functional as F
from avalanche.benchmarks.scenarios import class_incremental_benchmark
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from cfer.models.heads import PaperHead
from strategies.plugins import (
    ClassifierExpansionPlugin,
    DistillationPlugin,
    HeadL2Plugin,
    PSMRReplayPlugin,
)
from strategies.registry import create_strategy

SAMPLES_PER_CLASS = 8
MEMORY_SIZE = 8  # 4 classes in the stream -> 2 exemplars per class in 'grow' mode
PER_CLASS = 2
EPOCHS = 2


class TinyClassifier(nn.Module):
    """Stand-in for cfer.models.ExpressionClassifier: conv backbone + growing head."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.head = PaperHead(4, num_classes, hidden=(6, 5))

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def add_classes(self, num_new: int) -> None:
        self.head.add_classes(num_new)

    def l2_penalty(self) -> Tensor:  # the protocol's optional member, which HeadL2Plugin adds
        return self.head.l2_penalty()

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.backbone(images))


def _benchmark():  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat(SAMPLES_PER_CLASS)
    streams = {}
    for name in ("train", "test"):
        data = TensorDataset(torch.randn(len(labels), 3, 8, 8, generator=generator), labels)
        data.targets = labels.tolist()  # type: ignore[attr-defined]
        streams[name] = data
    return class_incremental_benchmark(
        streams, class_order=[0, 1, 2, 3], num_classes_per_exp=[2, 1, 1]
    )


class Recorder(SupervisedPlugin):
    """Records strategy state at the hooks; runs before the strategy's own plugins."""

    def __init__(self) -> None:
        super().__init__()
        self.num_classes: list[int] = []
        self.train_sizes: list[int] = []
        self.train_class_counts: list[dict[int, int]] = []
        self.fc_in_optimizer: list[bool] = []
        self.epoch_labels: dict[tuple[int, int], Counter] = defaultdict(Counter)
        self.basic_model: nn.Module | None = None

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.num_classes.append(strategy.model.num_classes)
        self.train_sizes.append(len(strategy.adapted_dataset))
        self.train_class_counts.append(
            dict(Counter(int(t) for t in strategy.adapted_dataset.targets))
        )
        fc = strategy.model.head.fc
        optimized = [p for group in strategy.optimizer.param_groups for p in group["params"]]
        self.fc_in_optimizer.append(any(p is fc.weight for p in optimized))

    def before_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
        key = (strategy.clock.train_exp_counter, strategy.clock.train_exp_epochs)
        self.epoch_labels[key].update(int(y) for y in strategy.mb_y)

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        if strategy.clock.train_exp_counter == 0:
            self.basic_model = copy.deepcopy(strategy.model).eval()


PLUGIN_TYPES = (ClassifierExpansionPlugin, DistillationPlugin, HeadL2Plugin, PSMRReplayPlugin)


def _hooks_implemented(plugin: SupervisedPlugin) -> list[str]:
    return [
        name
        for name in dir(SupervisedPlugin)
        if name.startswith(("before_", "after_"))
        and getattr(type(plugin), name) is not getattr(SupervisedPlugin, name)
    ]


def _count_calls(plugin: SupervisedPlugin, counts: Counter) -> None:
    for hook in _hooks_implemented(plugin):
        original = getattr(plugin, hook)

        def counted(
            strategy: Any, _hook: str = hook, _original: Callable = original, **kwargs: Any
        ) -> None:
            counts[(type(plugin).__name__, _hook)] += 1
            _original(strategy, **kwargs)

        setattr(plugin, hook, counted)


def _hand_kd(student: Tensor, teacher: Tensor, temperature: float = 3.0) -> Tensor:
    padded = torch.cat(
        [teacher, torch.zeros(len(teacher), student.shape[1] - teacher.shape[1])], dim=1
    )
    p_teacher = torch.exp(padded / temperature) / torch.exp(padded / temperature).sum(
        1, keepdim=True
    )
    p_student = torch.exp(student / temperature) / torch.exp(student / temperature).sum(
        1, keepdim=True
    )
    return -(p_teacher * torch.log(p_student)).sum(1).mean()


def _run_cfer(**options: Any):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = TinyClassifier(num_classes=2)
    recorder = Recorder()
    strategy = create_strategy(
        "cfer",
        model,
        torch.optim.Adam(model.parameters(), lr=1e-2),
        train_mb_size=4,
        train_epochs=EPOCHS,
        eval_mb_size=16,
        device="cpu",
        evaluator=EvaluationPlugin(),
        plugins=[recorder],
        memory_size=MEMORY_SIZE,
        total_num_classes=4,
        **options,
    )
    return model, strategy, recorder


def test_cfer_end_to_end_hooks_growth_memory_and_losses() -> None:
    benchmark = _benchmark()
    model, strategy, recorder = _run_cfer()
    plugins = {type(p): p for p in strategy.plugins if isinstance(p, PLUGIN_TYPES)}
    assert set(plugins) == set(PLUGIN_TYPES)

    calls: Counter = Counter()
    for plugin in plugins.values():
        _count_calls(plugin, calls)

    # independent checks of the loss terms, wrapped around the plugins' own hooks
    distillation, l2 = plugins[DistillationPlugin], plugins[HeadL2Plugin]
    kd_checks: list[tuple[float, float]] = []
    l2_checks: list[tuple[float, float]] = []
    distill_hook, l2_hook = distillation.before_backward, l2.before_backward

    def check_distillation(strategy: Any, **kwargs: Any) -> None:
        before = strategy.loss.detach().clone()
        distill_hook(strategy, **kwargs)
        step = strategy.clock.train_exp_counter - 1
        expected = torch.zeros(())
        if step >= 0:
            with torch.no_grad():
                teacher_logits = recorder.basic_model(strategy.mb_x)
            student = strategy.mb_output.detach()
            hard = F.cross_entropy(student, strategy.mb_y)
            expected = (
                0.1 * math.exp(-step / (1 + math.e)) * (_hand_kd(student, teacher_logits) - hard)
            )
        kd_checks.append(((strategy.loss.detach() - before).item(), expected.item()))

    def check_l2(strategy: Any, **kwargs: Any) -> None:
        before = strategy.loss.detach().clone()
        l2_hook(strategy, **kwargs)
        expected = 0.0
        if strategy.clock.train_exp_counter == 0:
            kernels = [m.weight for m in strategy.model.head.hidden if isinstance(m, nn.Linear)]
            expected = 1e-5 * sum((w.detach() ** 2).sum().item() for w in kernels)
        l2_checks.append(((strategy.loss.detach() - before).item(), expected))

    distillation.before_backward = check_distillation
    l2.before_backward = check_l2

    memory = plugins[PSMRReplayPlugin].storage_policy
    memory_counts = []
    for index, experience in enumerate(benchmark.train_stream):
        strategy.train(experience)
        strategy.eval(benchmark.test_stream[: index + 1])
        memory_counts.append(dict(Counter(int(t) for t in memory.buffer.targets)))
        assert model.num_classes == 2 + index

    # every hook implemented by a cfer plugin fired
    for plugin in plugins.values():
        for hook in _hooks_implemented(plugin):
            assert calls[(type(plugin).__name__, hook)] > 0, (type(plugin).__name__, hook)
    assert calls[("PSMRReplayPlugin", "after_training_exp")] == 3
    assert calls[("PSMRReplayPlugin", "before_training_epoch")] == 3 * EPOCHS

    # one unit per experience, grown before the optimizer is built
    assert recorder.num_classes == [2, 3, 4]
    assert recorder.fc_in_optimizer == [True, True, True]

    # basic phase on all data; then memory + PER_CLASS samples of the new class, every epoch
    assert recorder.train_sizes == [2 * SAMPLES_PER_CLASS, 3 * PER_CLASS, 4 * PER_CLASS]
    assert recorder.train_class_counts[1] == {0: PER_CLASS, 1: PER_CLASS, 2: PER_CLASS}
    for epoch in range(EPOCHS):
        assert recorder.epoch_labels[(1, epoch)] == {0: PER_CLASS, 1: PER_CLASS, 2: PER_CLASS}
        assert recorder.epoch_labels[(2, epoch)] == {c: PER_CLASS for c in range(4)}
    assert memory_counts == [
        {0: PER_CLASS, 1: PER_CLASS},
        {0: PER_CLASS, 1: PER_CLASS, 2: PER_CLASS},
        {c: PER_CLASS for c in range(4)},
    ]

    # the teacher is the frozen basic model, its logits zero-padded; weights follow g_i
    assert distillation.teacher is not None and distillation.teacher.num_classes == 2
    for teacher_param, basic_param in zip(
        distillation.teacher.parameters(), recorder.basic_model.parameters()
    ):
        assert torch.equal(teacher_param, basic_param)
    assert kd_checks and all(
        actual == pytest.approx(expected, abs=1e-5) for actual, expected in kd_checks
    )
    assert any(abs(expected) > 0 for _, expected in kd_checks)
    # the penalty is ~1e-4 while float32 resolves the ~1.4 loss only to ~2e-7
    assert l2_checks and all(
        actual == pytest.approx(expected, abs=1e-6) for actual, expected in l2_checks
    )
    assert any(expected > 0 for _, expected in l2_checks)


def test_previous_teacher_and_all_new_samples_options() -> None:
    benchmark = _benchmark()
    _, strategy, recorder = _run_cfer(
        teacher="previous", new_class_samples="all", memory_mode="limit"
    )
    distillation = next(p for p in strategy.plugins if isinstance(p, DistillationPlugin))
    weights = []
    for experience in benchmark.train_stream:
        strategy.train(experience)
        weights.append(distillation.weight)
    assert distillation.teacher is not None and distillation.teacher.num_classes == 3
    assert weights == pytest.approx([0.0, 0.1, 0.1 * math.exp(-1 / (1 + math.e))])
    # 'limit': 8 exemplars shared by the classes seen; the new class brings all its samples
    assert recorder.train_sizes == [16, 8 + SAMPLES_PER_CLASS, 3 * (8 // 3) + SAMPLES_PER_CLASS]
