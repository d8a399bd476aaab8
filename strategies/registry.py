"""Continual-learning strategies by name: the paper's method, its ablations and baselines.

Each strategy is one :class:`StrategySpec` in :data:`STRATEGIES`, which carries every fact about it:
how to build it, its config dataclass, whether it needs a memory or the stream's class count,
whether it trains offline (joint), whether it early-stops, which scenario it reads, and how it
saves and restores its state for resume. The runner (``cfer.continual``) and the tests read those
facts from the entry; adding a strategy is one entry plus its tests.

``'cfer'`` composes the plugins of :mod:`strategies.plugins` on Avalanche's ``Naive`` template; the
baselines are Avalanche's own strategies, with :class:`~strategies.plugins.ClassifierExpansionPlugin`
growing the model's head (a :class:`~strategies.protocols.GrowingClassifier`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

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

from cfer.core.layers import DEFAULT_LAYERS, MultiLayerFeatures, parse_layer
from cfer.core.prototypes import ClassMeans, RandomProjectionRidge
from cfer.core.sorting import Score
from cfer.registry import Registry
from cfer.taxonomy import get_category
from strategies.baselines import GDumbInitModelGrowth, ICaRLPriming
from strategies.plugins import (
    ClassifierExpansionPlugin,
    DistillationPlugin,
    ExemplarHeadPlugin,
    FreshOptimizerPlugin,
    HeadL2Plugin,
    NewClassSamples,
    PSMRReplayPlugin,
    TeacherMode,
    WeightAligningPlugin,
)
from strategies.psmr import MemoryMode, PredictiveSortingSelection, PSMRBuffer
from strategies.states import (
    CFER_STATE,
    EWC_STATE,
    GDUMB_STATE,
    LWF_STATE,
    NO_STATE,
    REPLAY_STATE,
    STATISTICS_HEAD_STATE,
    StrategyState,
)
from strategies.statistics_heads import (
    FrozenFeatureClassifier,
    GaussianCalibration,
    StatisticsHeadPlugin,
    feature_dim_of,
)

__all__ = [
    "STRATEGIES",
    "CferConfig",
    "EWCConfig",
    "ICaRLConfig",
    "LwFConfig",
    "NoConfig",
    "Strategy",
    "StrategySpec",
    "create_strategy",
    "hooked_modules",
    "make_config",
    "trained_model",
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
    head_l2_in_basic_phase: bool = True  # add the model's l2_penalty() during the basic phase
    memoize_teacher: bool = True  # keep the frozen teacher's logits per sample (off by itself if inputs change)
    weight_aligning: bool = False  # rescale the new class's output weights to the old ones' mean norm (WA)
    # report the linear head, or a head fitted to the memory's exemplars: their class means, or RanPAC's ridge
    classifier: Literal["linear", "exemplar-means", "exemplar-ridge"] = "linear"
    fresh_optimizer: bool = False  # new Adam state at every step, as the reference code (not the paper) does


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
class RanPACConfig:
    """Hyper-parameters of RanPAC's head (McDonnell et al. 2023)."""

    projection_dim: int = 2000  # size M of the random ReLU projection (paper: 10,000)
    ridge: float | None = None  # the ridge lambda; None chooses it on held-out samples of the first experience
    # what scores each lambda: a fifth of the first experience's images (RanPAC), or its classes' validation subjects
    ridge_on: Literal["training", "validation"] = "training"
    seed: int = 0  # seed of the random projection
    validation: Any = None  # the validation split, for ridge_on='validation' (the runner gives it)


@dataclass(frozen=True)
class LayersRanPACConfig(RanPACConfig):
    """RanPAC's head on features from several depths of the backbone (:mod:`cfer.core.layers`)."""

    # 'module.path:grid' per inner module; a negative index counts from the end of a module list
    layers: tuple[str, ...] = DEFAULT_LAYERS


@dataclass(frozen=True)
class CRanPACConfig(RanPACConfig):
    """C-RanPAC's calibration of each new class (Goswami et al. 2024; its reference code's defaults)."""

    toward: Literal["similar", "components"] = "similar"  # the base classes' weights: similarity, or ½ per component
    shift_weight: float = 0.9  # α: the class's own share of its calibrated mean
    softmax_temperature: float = 16.0  # τ of the similarity weights
    covariance_weight: float = 0.5  # β: the base classes' share of its calibrated covariance
    samples: int = 800  # draws of its Gaussian, in place of its features
    class_names: tuple[str, ...] = ()  # the stream's classes in output order (the runner gives them)
    layers: tuple[str, ...] = ()  # as ranpac-layers'; none: the pooled features


@dataclass(frozen=True)
class NoConfig:
    """Strategies without hyper-parameters beyond the common ones."""


Strategy = SupervisedTemplate
"""What :func:`create_strategy` returns: an Avalanche supervised strategy."""

Builder = Callable[[nn.Module, Optimizer, Any, "int | None", dict[str, Any]], SupervisedTemplate]
"""``(model, optimizer, config, memory_size, common keyword arguments) -> strategy``."""


@dataclass(frozen=True)
class StrategySpec:
    """A registered strategy: every fact about it, in one place."""

    build: Builder  # makes the Avalanche strategy
    config_type: type  # the dataclass of its hyper-parameters
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)  # config overrides (ablations)
    needs_memory: bool = False  # memory_size is required (the replay budget M)
    needs_total_classes: bool = False  # its config's total_num_classes is the stream's class count
    offline: bool = False  # trained once on the whole stream, then scored on every prefix (joint)
    early_stops: bool = True  # validation early stopping applies to its steps
    scenario: Literal["stream", "legacy"] = "stream"  # 'legacy': Avalanche's deprecated nc_benchmark
    trunk_inputs: bool = True  # it may train on cached frozen-trunk activations instead of images
    needs_class_names: bool = False  # its config's class_names are the stream's classes, in output order
    needs_validation: bool = False  # its config's validation is the split early stopping would score
    # the backbone modules it hooks, from its config: a cached trunk is cut before them
    hooked_modules: Callable[[Any], tuple[str, ...]] | None = None
    exports_model: bool = True  # its final model is a checkpoint of the classifier (not a statistics head)
    keeps_regression: bool = True  # its loss may take the valence/arousal term (the model it trains is the regressor's)
    reference_options: dict[str, Any] = dataclasses.field(default_factory=dict)  # config under --protocol reference
    state: StrategyState | None = NO_STATE  # how it saves and restores for resume; None: it restarts
    description: str = ""  # one line for listings
    caveat: str = ""  # how its scores differ from the others', printed beside its row in a comparison


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


def hooked_modules(name: str, options: dict[str, Any]) -> tuple[str, ...]:
    """The backbone modules strategy ``name`` hooks with these config fields (empty for most).

    A run that caches a frozen trunk cuts it before them, so that they run on the cached activations.
    """
    spec = STRATEGIES[name]
    if spec.hooked_modules is None:
        return ()
    return spec.hooked_modules(make_config(spec.config_type, {**spec.defaults, **options}))


def trained_model(strategy: SupervisedTemplate, model: nn.Module) -> nn.Module:
    """The model a strategy is training, to save or checkpoint.

    GDumb replaces ``strategy.model`` by a fresh copy at every experience, while iCaRL wraps the
    original's backbone and head (``strategy.model`` is then a wrapper and ``model`` is the one).

    Args:
        strategy: The strategy.
        model: The model it was built around.

    Returns:
        ``strategy.model`` when it is of ``model``'s type, else ``model``.
    """
    return strategy.model if isinstance(strategy.model, type(model)) else model


def _build_cfer(
    model: nn.Module, optimizer: Optimizer, config: CferConfig, memory_size: int | None, common: dict[str, Any]
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
    plugins: list[SupervisedPlugin] = [ClassifierExpansionPlugin()]
    if config.fresh_optimizer:
        plugins.append(FreshOptimizerPlugin())
    if config.weight_aligning:
        plugins.append(WeightAligningPlugin())  # before the memory update, which ranks with the aligned head
    plugins.append(
        PSMRReplayPlugin(memory, new_class_samples=config.new_class_samples, resample_each_epoch=config.resample_each_epoch)
    )
    if config.classifier != "linear":  # after the memory update: a head of its exemplars
        plugins.append(ExemplarHeadPlugin(memory, "means" if config.classifier == "exemplar-means" else "ridge"))
    if config.distillation:
        plugins.append(
            DistillationPlugin(
                initial_weight=config.initial_weight,
                temperature=config.temperature,
                teacher=config.teacher,
                basic_experiences=config.basic_experiences,
                memoize=config.memoize_teacher,
            )
        )
    if config.head_l2_in_basic_phase:
        plugins.append(HeadL2Plugin(basic_experiences=config.basic_experiences))
    common = {**common, "plugins": common["plugins"] + plugins}
    return Naive(model=model, optimizer=optimizer, criterion=nn.CrossEntropyLoss(), **common)


def _avalanche(
    template: type[SupervisedTemplate],
    memory_argument: str | None = None,
    extra_plugins: Sequence[type[SupervisedPlugin]] = (),
) -> Builder:
    """A builder of one of Avalanche's strategies: config fields become its keyword arguments.

    Args:
        template: The Avalanche strategy class.
        memory_argument: Its keyword for the replay budget (``mem_size``), if it has one.
        extra_plugins: cfer adapters it needs besides the head growth (e.g. GDumb's).
    """

    def build(
        model: nn.Module, optimizer: Optimizer, config: Any, memory_size: int | None, common: dict[str, Any]
    ) -> SupervisedTemplate:
        options = dataclasses.asdict(config)
        if memory_argument is not None:
            options[memory_argument] = memory_size
        plugins = [*common["plugins"], ClassifierExpansionPlugin(), *(plugin() for plugin in extra_plugins)]
        return template(
            model=model,
            optimizer=optimizer,
            criterion=nn.CrossEntropyLoss(),
            **options,
            **{**common, "plugins": plugins},
        )

    return build


def _build_statistics_head(kind: Literal["ncm", "ranpac"]) -> Builder:
    """A builder of a training-free strategy: the frozen backbone and a head of accumulated statistics."""

    def build(
        model: nn.Module, optimizer: Optimizer, config: Any, memory_size: int | None, common: dict[str, Any]
    ) -> SupervisedTemplate:
        backbone, dim = model.backbone, feature_dim_of(model)
        if getattr(config, "layers", ()):
            backbone = MultiLayerFeatures(model.backbone, config.layers, memoize=True)  # frozen: each image once
            dim = backbone.dim
        if kind == "ncm":
            head: ClassMeans | RandomProjectionRidge = ClassMeans(dim)
        else:
            head = RandomProjectionRidge(dim, config.projection_dim, config.ridge or 1.0, config.seed)
        frozen = FrozenFeatureClassifier(backbone, head)
        plugin = StatisticsHeadPlugin(choose_ridge=kind == "ranpac" and config.ridge is None,
                                      calibration=_calibration(config) if isinstance(config, CRanPACConfig) else None,
                                      ridge_scored=_ridge_scored(config) if kind == "ranpac" else None)
        plugins = [*common["plugins"], plugin]
        # zero epochs: the head learns from statistics after each experience, the backbone never
        return Naive(model=frozen, optimizer=optimizer, criterion=nn.CrossEntropyLoss(),
                     **{**common, "train_epochs": 0, "plugins": plugins})

    return build


def _ridge_scored(config: RanPACConfig) -> Any:
    """The data that scores RanPAC's ``λ`` candidates: None for its own held-out fifth, else the validation split."""
    if config.ridge_on not in ("training", "validation"):
        raise ValueError(f"unknown ridge_on {config.ridge_on!r}; known: 'training', 'validation'")
    if config.ridge_on == "training":
        return None
    if config.validation is None:
        raise ValueError("ridge_on='validation' needs the validation split; the runner gives it (validation=...)")
    return config.validation


def _layer_modules(config: Any) -> tuple[str, ...]:
    """The modules a multi-layer strategy's ``layers`` hook."""
    return tuple(parse_layer(layer)[0] for layer in config.layers)


def _calibration(config: CRanPACConfig) -> GaussianCalibration:
    """The calibration a :class:`CRanPACConfig` describes.

    Raises:
        ValueError: If it calibrates toward components without the class names.
    """
    components = None
    if config.toward == "components":
        if not config.class_names:
            raise ValueError("calibrating toward components needs class_names, the stream's classes in output order")
        components = compound_components(config.class_names)
    return GaussianCalibration(config.shift_weight, config.softmax_temperature, config.covariance_weight,
                               config.samples, config.seed, components)


def compound_components(class_names: Sequence[str]) -> dict[int, tuple[int, int]]:
    """The outputs of the two components of every compound class among ``class_names`` (output order).

    Raises:
        ValueError: If a compound's component is not among the classes.
    """
    index = {name: output for output, name in enumerate(class_names)}
    components: dict[int, tuple[int, int]] = {}
    for output, name in enumerate(class_names):
        category = get_category(name)
        if category.kind != "compound":
            continue
        missing = [part for part in category.components if part not in index]
        if missing:
            raise ValueError(f"compound {name!r} has components {missing} that are not classes of the stream")
        first, second = (index[part] for part in category.components)
        components[output] = (first, second)
    return components


def _build_icarl(
    model: nn.Module, optimizer: Optimizer, config: ICaRLConfig, memory_size: int | None, common: dict[str, Any]
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
        **{**common, "plugins": [*common["plugins"], ICaRLPriming()]},
    )


STRATEGIES: Registry[StrategySpec] = Registry("strategy")
"""Registered strategies by name."""

STRATEGIES.register("cfer", StrategySpec(
    _build_cfer, CferConfig, needs_memory=True, needs_total_classes=True, state=CFER_STATE,
    reference_options={"score": "logit"},
    description="the paper's: one unit per class, (1-g_i)·CE + g_i·KD from the basic model, PSMR memory"))
STRATEGIES.register("cfer-no-kd", StrategySpec(
    _build_cfer, CferConfig, {"distillation": False}, needs_memory=True, needs_total_classes=True,
    state=CFER_STATE, reference_options={"score": "logit"}, description="ablation: cfer without the distillation term"))
STRATEGIES.register("cfer-random-memory", StrategySpec(
    _build_cfer, CferConfig, {"selection": "random"}, needs_memory=True, needs_total_classes=True,
    state=CFER_STATE, reference_options={"score": "logit"}, description="ablation: cfer with a class-balanced random memory instead of PSMR's sorting"))
STRATEGIES.register("cfer-wa", StrategySpec(
    _build_cfer, CferConfig, {"weight_aligning": True}, needs_memory=True, needs_total_classes=True,
    state=CFER_STATE, reference_options={"score": "logit"},
    description="cfer with weight aligning (Zhao et al. 2020) against the bias toward the newest class"))
STRATEGIES.register("cfer-ncm", StrategySpec(
    _build_cfer, CferConfig, {"classifier": "exemplar-means"}, needs_memory=True, needs_total_classes=True,
    state=CFER_STATE, reference_options={"score": "logit"},
    description="cfer, classifying by the nearest mean of the PSMR exemplars (iCaRL's rule)"))
STRATEGIES.register("cfer-ridge", StrategySpec(
    _build_cfer, CferConfig, {"classifier": "exemplar-ridge"}, needs_memory=True, needs_total_classes=True,
    state=CFER_STATE, reference_options={"score": "logit"},
    description="cfer, classifying by RanPAC's ridge head fitted to the PSMR exemplars"))
STRATEGIES.register("cfer-fresh-optimizer", StrategySpec(
    _build_cfer, CferConfig, {"fresh_optimizer": True}, needs_memory=True, needs_total_classes=True,
    state=CFER_STATE, reference_options={"score": "logit"},
    description="cfer with new optimizer state at every step, as the reference code"))
STRATEGIES.register("replay-balanced", StrategySpec(
    _build_cfer, CferConfig, {"distillation": False, "selection": "random"}, needs_memory=True,
    needs_total_classes=True, state=CFER_STATE,
    description="class-balanced random replay of PSMR's size, cfer's new-class sampling, no distillation"))
STRATEGIES.register("ncm", StrategySpec(
    _build_statistics_head("ncm"), NoConfig, early_stops=False, state=STATISTICS_HEAD_STATE, exports_model=False,
    description="SimpleCIL: nearest class mean (cosine) on the frozen basic-phase backbone, no training"))
STRATEGIES.register("ranpac", StrategySpec(
    _build_statistics_head("ranpac"), RanPACConfig, early_stops=False, needs_validation=True,
    state=STATISTICS_HEAD_STATE, exports_model=False, description="RanPAC: random ReLU projection and a ridge head on frozen features"))
STRATEGIES.register("ranpac-layers", StrategySpec(
    _build_statistics_head("ranpac"), LayersRanPACConfig, early_stops=False, needs_validation=True,
    state=STATISTICS_HEAD_STATE, exports_model=False, hooked_modules=_layer_modules,
    description="RanPAC on the pooled features and the last three block stages' maps on coarse grids, "
                "standardised on the basic classes"))
STRATEGIES.register("c-ranpac", StrategySpec(
    _build_statistics_head("ranpac"), CRanPACConfig, early_stops=False, needs_validation=True,
    state=STATISTICS_HEAD_STATE, exports_model=False, description="C-RanPAC: RanPAC, each new class's features replaced by 800 draws of its "
                                     "Gaussian calibrated toward similar basic classes"))
STRATEGIES.register("compose-ranpac-layers", StrategySpec(
    _build_statistics_head("ranpac"), CRanPACConfig, defaults={"toward": "components", "layers": DEFAULT_LAYERS},
    early_stops=False, needs_validation=True, state=STATISTICS_HEAD_STATE, exports_model=False,
    needs_class_names=True, hooked_modules=_layer_modules,
    description="ranpac-layers with C-RanPAC's calibration toward each compound's two components"))
STRATEGIES.register("naive", StrategySpec(
    _avalanche(Naive), NoConfig, description="fine-tuning on each experience alone (lower bound)"))
STRATEGIES.register("joint", StrategySpec(
    _avalanche(JointTraining), NoConfig, offline=True,
    description="one model trained on the whole stream at once, scored on every prefix",
    caveat="one model of all 21 classes, scored at every prefix with all 21 outputs live (the continual models have "
           "only the seen classes'), so a face can be given a class not yet seen: its prefix accuracies are a lower "
           "bound of a seen-classes score, its final ones are exact"))
STRATEGIES.register("replay", StrategySpec(
    _avalanche(Replay, "mem_size"), NoConfig, needs_memory=True, state=REPLAY_STATE,
    description="Avalanche's experience-balanced random replay of PSMR's size"))
STRATEGIES.register("lwf", StrategySpec(
    _avalanche(LwF), LwFConfig, state=LWF_STATE, description="Learning without Forgetting (Li & Hoiem 2016)"))
STRATEGIES.register("icarl", StrategySpec(
    _build_icarl, ICaRLConfig, needs_memory=True, needs_total_classes=True, scenario="legacy",
    # iCaRL classifies by nearest class mean, computed only at the end of an experience, so a
    # validation score during its training would rank stale means
    # and it averages the embeddings of horizontally flipped inputs, which only means something for images
    # it trains a wrapper of the model (feature extractor and classifier), without the regressor
    early_stops=False, state=None, trunk_inputs=False, keeps_regression=False, description="iCaRL (Rebuffi et al. 2017): herding memory, nearest-mean classifier"))
STRATEGIES.register("ewc", StrategySpec(
    _avalanche(EWC), EWCConfig, state=EWC_STATE, description="Elastic Weight Consolidation (Kirkpatrick et al. 2017)"))
STRATEGIES.register("gdumb", StrategySpec(
    _avalanche(GDumb, "mem_size", [GDumbInitModelGrowth]), NoConfig, needs_memory=True, state=GDUMB_STATE,
    description="GDumb (Prabhu et al. 2020): retrain from scratch on a class-balanced memory"))


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
        name: One of :data:`STRATEGIES` (``'cfer'``, its ablations, Avalanche's baselines).
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
    spec = STRATEGIES[name]
    config = make_config(spec.config_type, {**spec.defaults, **kwargs})
    if spec.needs_memory and (memory_size is None or memory_size <= 0):
        raise ValueError(f"strategy {name!r} needs a positive memory_size, got {memory_size}")
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
