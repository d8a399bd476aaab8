"""Continual-learning strategies by name: the paper's method, its ablations and baselines.

``'cfer'`` composes the plugins of :mod:`strategies.plugins` on Avalanche's ``Naive`` template;
the baselines are Avalanche's own strategies, unchanged. Every strategy has a ``@dataclass``
config; ``create_strategy`` builds it from keyword arguments and rejects unknown keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import torch
from avalanche.core import SupervisedPlugin
from avalanche.models.dynamic_optimizers import reset_optimizer
from avalanche.training import (
    EWC,
    GDumb,
    ICaRL,
    JointTraining,
    LwF,
    Naive,
    RandomExemplarsSelectionStrategy,
    Replay,
)
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.storage_policy import ExemplarsSelectionStrategy
from avalanche.training.templates import SupervisedTemplate
from torch import nn
from torch.optim import Optimizer

from strategies.plugins import (
    ClassifierExpansionPlugin,
    DistillationPlugin,
    HeadL2Plugin,
    NewClassSamples,
    PSMRReplayPlugin,
    TeacherMode,
)
from strategies.psmr import MemoryMode, PredictiveSortingSelection, PSMRBuffer, Score

__all__ = [
    "STRATEGIES",
    "CferConfig",
    "EWCConfig",
    "ICaRLConfig",
    "LwFConfig",
    "NoConfig",
    "StrategySpec",
    "create_strategy",
    "make_config",
]


@dataclass(frozen=True)
class CferConfig:
    """Hyper-parameters of the paper's strategy (defaults: Maiden & Nakisa 2023)."""

    initial_weight: float = 0.1  # distillation weight g at the first incremental step
    temperature: float = 3.0  # softmax temperature T of the distillation term
    teacher: TeacherMode = "basic"  # frozen basic-phase model, or 'previous' step's model
    distillation: bool = True  # False gives the 'cfer-no-kd' ablation
    memory_mode: MemoryMode = "grow"  # 'grow': fixed count per class; 'limit': fixed total
    total_num_classes: int | None = None  # classes of the whole stream; needed by 'grow'
    selection: Literal["predictive", "random"] = "predictive"  # 'random': ablation memory
    score: Score = "probability"  # rank by softmax probability, or by raw 'logit' (ref. code)
    new_class_samples: NewClassSamples = "balanced"  # new class trains on m samples, or 'all'
    resample_each_epoch: bool = True  # draw a fresh balanced subset every epoch (ref. code)
    basic_experiences: int = 1  # leading experiences forming the basic phase
    head_l2_in_basic_phase: bool = True  # add head.l2_penalty() during the basic phase


@dataclass(frozen=True)
class LwFConfig:
    """Hyper-parameters of Avalanche's LwF."""

    alpha: float = 1.0  # weight of the distillation penalty
    temperature: float = 2.0  # softmax temperature of the distillation penalty


@dataclass(frozen=True)
class EWCConfig:
    """Hyper-parameters of Avalanche's EWC."""

    ewc_lambda: float = 0.4  # weight of the quadratic penalty
    mode: Literal["separate", "online"] = "separate"  # one penalty per experience, or online
    decay_factor: float | None = None  # importance decay, 'online' mode only


@dataclass(frozen=True)
class ICaRLConfig:
    """Hyper-parameters of Avalanche's iCaRL."""

    total_num_classes: int | None = None  # classes of the whole stream; the head is sized to it
    fixed_memory: bool = True  # share memory_size among classes, or keep memory_size per class


@dataclass(frozen=True)
class NoConfig:
    """Strategies without hyper-parameters beyond the common ones."""


Builder = Callable[..., SupervisedTemplate]


@dataclass(frozen=True)
class StrategySpec:
    """A registered strategy: how to build it and its config."""

    build: Builder  # (model, optimizer, config, memory_size, common kwargs) -> strategy
    config_type: type  # the dataclass of its hyper-parameters
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)  # overrides (ablations)
    needs_memory: bool = False  # whether memory_size is required


def make_config(config_type: type, values: dict[str, Any]) -> Any:
    """Build a config dataclass, failing on unknown keys.

    Args:
        config_type: A dataclass type.
        values: Field values.

    Returns:
        The config.

    Raises:
        TypeError: If a key is not a field; the message lists the valid keys.
    """
    valid = {field.name for field in dataclasses.fields(config_type)}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise TypeError(
            f"unknown option(s) {unknown} for {config_type.__name__}; valid: {sorted(valid)}"
        )
    return config_type(**values)


def _require_memory(name: str, memory_size: int | None) -> int:
    if memory_size is None or memory_size <= 0:
        raise ValueError(f"strategy {name!r} needs a positive memory_size, got {memory_size}")
    return memory_size


def _build_cfer(
    model: nn.Module,
    optimizer: Optimizer,
    config: CferConfig,
    memory_size: int | None,
    common: dict[str, Any],
) -> SupervisedTemplate:
    assert memory_size is not None
    if config.selection not in ("predictive", "random"):
        raise ValueError(f"unknown selection {config.selection!r}; known: ['predictive', 'random']")
    selection: ExemplarsSelectionStrategy = (
        PredictiveSortingSelection(score=config.score)
        if config.selection == "predictive"
        else RandomExemplarsSelectionStrategy()
    )
    memory = PSMRBuffer(
        memory_size,
        mode=config.memory_mode,
        total_num_classes=config.total_num_classes,
        selection_strategy=selection,
    )
    plugins: list[SupervisedPlugin] = [
        ClassifierExpansionPlugin(),
        PSMRReplayPlugin(
            memory,
            new_class_samples=config.new_class_samples,
            resample_each_epoch=config.resample_each_epoch,
        ),
    ]
    if config.distillation:
        plugins.append(
            DistillationPlugin(
                initial_weight=config.initial_weight,
                temperature=config.temperature,
                teacher=config.teacher,
                basic_experiences=config.basic_experiences,
            )
        )
    if config.head_l2_in_basic_phase:
        plugins.append(HeadL2Plugin(basic_experiences=config.basic_experiences))
    common = {**common, "plugins": common["plugins"] + plugins}
    return Naive(model=model, optimizer=optimizer, criterion=nn.CrossEntropyLoss(), **common)


def _build_naive(
    model: nn.Module,
    optimizer: Optimizer,
    config: NoConfig,
    memory_size: int | None,
    common: dict[str, Any],
) -> SupervisedTemplate:
    return Naive(model=model, optimizer=optimizer, criterion=nn.CrossEntropyLoss(), **common)


def _build_joint(
    model: nn.Module,
    optimizer: Optimizer,
    config: NoConfig,
    memory_size: int | None,
    common: dict[str, Any],
) -> SupervisedTemplate:
    return JointTraining(
        model=model, optimizer=optimizer, criterion=nn.CrossEntropyLoss(), **common
    )


def _build_replay(
    model: nn.Module,
    optimizer: Optimizer,
    config: NoConfig,
    memory_size: int | None,
    common: dict[str, Any],
) -> SupervisedTemplate:
    return Replay(
        model=model,
        optimizer=optimizer,
        criterion=nn.CrossEntropyLoss(),
        mem_size=memory_size,
        **common,
    )


def _build_gdumb(
    model: nn.Module,
    optimizer: Optimizer,
    config: NoConfig,
    memory_size: int | None,
    common: dict[str, Any],
) -> SupervisedTemplate:
    return GDumb(
        model=model,
        optimizer=optimizer,
        criterion=nn.CrossEntropyLoss(),
        mem_size=memory_size,
        **common,
    )


def _build_lwf(
    model: nn.Module,
    optimizer: Optimizer,
    config: LwFConfig,
    memory_size: int | None,
    common: dict[str, Any],
) -> SupervisedTemplate:
    return LwF(
        model=model,
        optimizer=optimizer,
        criterion=nn.CrossEntropyLoss(),
        alpha=config.alpha,
        temperature=config.temperature,
        **common,
    )


def _build_ewc(
    model: nn.Module,
    optimizer: Optimizer,
    config: EWCConfig,
    memory_size: int | None,
    common: dict[str, Any],
) -> SupervisedTemplate:
    return EWC(
        model=model,
        optimizer=optimizer,
        criterion=nn.CrossEntropyLoss(),
        ewc_lambda=config.ewc_lambda,
        mode=config.mode,
        decay_factor=config.decay_factor,
        **common,
    )


def _build_icarl(
    model: nn.Module,
    optimizer: Optimizer,
    config: ICaRLConfig,
    memory_size: int | None,
    common: dict[str, Any],
) -> SupervisedTemplate:
    if config.total_num_classes is None:
        raise ValueError("strategy 'icarl' needs total_num_classes")
    # iCaRL reloads the previous model's state dict into a same-shaped copy after every
    # experience, so its classifier must cover every class from the start
    missing = config.total_num_classes - model.num_classes
    if missing > 0:
        model.add_classes(missing)
        # the optimizer was built over the old output layer; point it at the grown one
        reset_optimizer(optimizer, model)
    return ICaRL(
        feature_extractor=model.backbone,
        classifier=model.head,
        optimizer=optimizer,
        memory_size=memory_size,
        buffer_transform=None,
        fixed_memory=config.fixed_memory,
        **common,
    )


STRATEGIES: dict[str, StrategySpec] = {
    "cfer": StrategySpec(_build_cfer, CferConfig, needs_memory=True),
    "cfer-no-kd": StrategySpec(_build_cfer, CferConfig, {"distillation": False}, needs_memory=True),
    "cfer-random-memory": StrategySpec(
        _build_cfer, CferConfig, {"selection": "random"}, needs_memory=True
    ),
    "naive": StrategySpec(_build_naive, NoConfig),
    "joint": StrategySpec(_build_joint, NoConfig),
    "replay": StrategySpec(_build_replay, NoConfig, needs_memory=True),
    "lwf": StrategySpec(_build_lwf, LwFConfig),
    "icarl": StrategySpec(_build_icarl, ICaRLConfig, needs_memory=True),
    "ewc": StrategySpec(_build_ewc, EWCConfig),
    "gdumb": StrategySpec(_build_gdumb, NoConfig, needs_memory=True),
}
"""Registered strategies by name."""


def create_strategy(
    name: str,
    model: nn.Module,
    optimizer: Optimizer,
    *,
    train_mb_size: int,
    train_epochs: int,
    eval_mb_size: int,
    device: torch.device | str,
    evaluator: EvaluationPlugin | None = None,
    plugins: Sequence[SupervisedPlugin] = (),
    memory_size: int | None = None,
    **kwargs: Any,
) -> SupervisedTemplate:
    """Build a registered continual-learning strategy.

    Args:
        name: One of ``STRATEGIES``: ``'cfer'`` (distillation + head expansion + PSMR),
            ``'cfer-no-kd'``, ``'cfer-random-memory'``, and Avalanche's ``'naive'``, ``'joint'``,
            ``'replay'``, ``'lwf'``, ``'icarl'``, ``'ewc'``, ``'gdumb'``.
        model: A :class:`strategies.protocols.GrowingClassifier` (``'icarl'`` uses its
            ``backbone`` and ``head``).
        optimizer: Optimizer over ``model``'s parameters; Avalanche adds grown parameters.
        train_mb_size: Training mini-batch size.
        train_epochs: Epochs per experience.
        eval_mb_size: Evaluation mini-batch size.
        device: Device to train on.
        evaluator: Avalanche evaluation plugin; Avalanche's default evaluator if None.
        plugins: Extra plugins, run before the strategy's own.
        memory_size: Replay budget in samples (PSMR's ``M``; ``'replay'``, ``'gdumb'`` and
            ``'icarl'`` get the same budget); required by memory-based strategies.
        **kwargs: Fields of the strategy's config dataclass (e.g. ``total_num_classes``).

    Returns:
        The Avalanche strategy.

    Raises:
        KeyError: If ``name`` is unknown; the message lists the known names.
        TypeError: If a keyword is not a field of the strategy's config.
        ValueError: If a memory-based strategy lacks ``memory_size``.
    """
    try:
        spec = STRATEGIES[name]
    except KeyError:
        raise KeyError(
            f"unknown strategy {name!r}; known strategies: {sorted(STRATEGIES)}"
        ) from None
    config = make_config(spec.config_type, {**spec.defaults, **kwargs})
    if spec.needs_memory:
        memory_size = _require_memory(name, memory_size)
    common: dict[str, Any] = {
        "train_mb_size": train_mb_size,
        "train_epochs": train_epochs,
        "eval_mb_size": eval_mb_size,
        "device": device,
        "plugins": list(plugins),
    }
    if evaluator is not None:
        common["evaluator"] = evaluator
    return spec.build(model, optimizer, config, memory_size, common)
