"""Methods that add compound classes from K shots to the basic-phase model without forgetting it.

Each method is a :class:`FewShotLearner` on frozen backbone features: it starts from the **base
session** (the basic-phase head and the basic classes' training features, :class:`BaseSession`),
then learns one session of new classes at a time from their shots (:meth:`FewShotLearner.learn`)
and scores any features over every class seen (:meth:`FewShotLearner.logits`). A new method
subclasses it, implements ``_learn`` and ``logits`` (about 30 lines), and registers a
:class:`MethodSpec` in :data:`FEWSHOT_METHODS`; its settings are a dataclass, given per method in
``method_options`` (an unknown key is an error naming the valid ones). Registered:

* ``paper``: Maiden & Nakisa (2023): one more output unit per class on the basic model's head,
  trained on the shots alone with the continual loss ``(1 − g_i)·CE + g_i·KD`` (frozen basic model
  as teacher, :mod:`cfer.core.distillation`);
* ``paper+memory``: the same, with the PSMR memory of the basic classes (:mod:`cfer.core.sorting`)
  replayed and every batch class-balanced, so the new class has the share of one class;
* ``imprint``: weight imprinting on a cosine classifier (Qi et al. 2018, :mod:`cfer.core.imprinting`);
* ``teen``: imprinting, then TEEN's training-free calibration of the new prototypes toward similar
  base prototypes (Wang et al. 2023, :mod:`cfer.core.calibration`);
* ``imprint-ft``: imprinting, then a short fine-tune of the new rows only (CEC's ``ft_cos``, Zhang
  et al. 2021) with the paper's distillation loss against the classifier before the session;
* ``ranpac`` and ``c-ranpac``: RanPAC's statistics, see :mod:`cfer.fewshot.ranpac`;
* ``compose`` and ``compose-ranpac``: cfer's compositional method, see :mod:`cfer.fewshot.compose`.

The learners' base class and the base session are in :mod:`cfer.fewshot.learner`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from cfer.config import ConfigError, config_from_dict
from cfer.core.calibration import calibrate_prototypes
from cfer.core.distillation import DistillationLoss, kd_weight
from cfer.core.imprinting import CosineClassifier, class_means, imprint_weights
from cfer.core.sorting import SCORES, Score, representative_memory_size, sort_by_score
from cfer.fewshot.learner import BaseSession, FewShotLearner
from cfer.fewshot.compose import ComposeConfig, ComposeLearner, ComposeRanPACConfig, ComposeRanPACLearner
from cfer.fewshot.ranpac import (
    CRanPACConfig,
    CRanPACLearner,
    RanPACConfig,
    RanPACLearner,
)
from cfer.registry import Registry

__all__ = [
    "FEWSHOT_METHODS",
    "BaseSession",
    "FewShotLearner",
    "ImprintConfig",
    "ImprintFinetuneConfig",
    "ImprintFinetuneLearner",
    "ImprintLearner",
    "MethodSpec",
    "PaperConfig",
    "PaperLearner",
    "PaperMemoryConfig",
    "PaperMemoryLearner",
    "TeenConfig",
    "TeenLearner",
    "check_method_options",
    "create_learner",
    "method_config",
]


# --- the paper's method, with and without memory --------------------------------------------------


@dataclass(frozen=True)
class PaperConfig:
    """The paper's continual loss on the basic model's head, one output unit per new class."""

    steps: int = 30  # Adam steps per session, whatever K (fixed: no image is held out to early-stop on)
    batch_size: int = 32  # samples per step, drawn with replacement
    lr: float = 1e-3  # Adam learning rate (reference: 1e-5 for up to 1000 epochs)
    temperature: float = 3.0  # distillation temperature T
    kd_weight: float = 0.1  # distillation weight g
    step: int = 0  # step index i of the first session in g_i = g·exp(−i/(1+e)); later sessions count on


class PaperLearner(FewShotLearner):
    """Maiden & Nakisa (2023): new output units trained on the shots alone with ``(1 − g_i)·CE + g_i·KD``.

    The head is a copy of the basic model's; each session grows it (Glorot rows, old rows kept) and
    runs ``steps`` Adam steps (a fresh optimiser per session, as the reference's per-class models)
    against the frozen basic model as teacher, with ``i`` the session's step index.

    Args:
        base: The base session.
        config: Training settings.
        seed: Seeds the new units, the batches and dropout.
    """

    balanced_batches = False
    """Batches draw samples uniformly; True: a class uniformly, then one of its samples."""

    def __init__(self, base: BaseSession, config: PaperConfig, seed: int = 0) -> None:
        super().__init__(base, seed)
        self.config = config
        self.teacher = base.head.eval()
        self.head = copy.deepcopy(base.head).eval()
        self.head.requires_grad_(True)

    def _learn(self, support: Tensor, labels: Tensor, num_new: int) -> None:
        generator = self._generator()
        self.head.add_classes(num_new, generator=generator)
        inputs, targets = self._training_set(support, labels)
        self._train(inputs, targets, generator)
        self.head.eval()

    def _training_set(self, support: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The shots alone, as the reference."""
        return support, labels

    def _train(self, inputs: Tensor, targets: Tensor, generator: torch.Generator) -> None:
        config = self.config
        # fused: one kernel per step instead of one per operation and tensor; half the step time on the CPU
        optimizer = torch.optim.Adam(self.head.parameters(), lr=config.lr, fused=True)
        loss_fn = DistillationLoss(config.temperature)
        weight = kd_weight(config.step + self.sessions, config.kd_weight)
        draw = _balanced_draw(targets, generator) if self.balanced_batches else _uniform_draw(len(targets), generator)
        with torch.no_grad():  # the frozen teacher maps each input to the same logits: compute them once
            teacher_logits = self.teacher(inputs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))  # dropout in the head
            self.head.train()
            for _ in range(config.steps):
                batch = draw(config.batch_size)
                loss = loss_fn(self.head(inputs[batch]), targets[batch], teacher_logits[batch], weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

    @torch.no_grad()
    def logits(self, features: Tensor) -> Tensor:
        return self.head(features.float())


@dataclass(frozen=True)
class PaperMemoryConfig(PaperConfig):
    """The paper's loss with the PSMR memory replayed and class-balanced batches."""

    # steps and lr are the paper method's: on validation subjects 100 steps (lr 1e-3 or 3e-4) did no
    # better than 30 (FSCIL final accuracy 0.239 / 0.253 against 0.249) and cost 3.5x the time
    memory_fraction: float = 0.3  # PSMR budget M as a share of the base training images, split evenly over classes
    score: Score = "probability"  # PSMR ranks by softmax probability (paper) or by raw 'logit' (reference code)


class PaperMemoryLearner(PaperLearner):
    """``paper`` with Predictive Sorting Memory Replay (Maiden & Nakisa 2023) of every class seen.

    At the base session each basic class keeps the ``m = floor(memory_fraction · N_base) // n_basic``
    training samples the basic model scores highest on its own unit (:func:`sort_by_score`); each
    later class keeps up to ``m`` of its shots, ranked by the head that has just learned it. A
    session trains on the memory plus the new shots, and every batch is class-balanced (a class drawn
    uniformly, then one of its samples): the new class has the share of one class, as the continual
    ``cfer`` strategy's ``new_class_samples='balanced'``, instead of all of it.
    """

    balanced_batches = True

    def __init__(self, base: BaseSession, config: PaperMemoryConfig, seed: int = 0) -> None:
        super().__init__(base, config, seed)
        if config.score not in SCORES:
            raise ValueError(f"unknown score {config.score!r}; known: {list(SCORES)}")
        self.score: Score = config.score
        self.memory_per_class = max(1, representative_memory_size(len(base.labels), config.memory_fraction)
                                    // base.num_classes)
        self.memory_features, self.memory_labels = self._ranked(base.features.float(), base.labels, self.teacher)

    def _training_set(self, support: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        return torch.cat([self.memory_features, support]), torch.cat([self.memory_labels, labels])

    def _learn(self, support: Tensor, labels: Tensor, num_new: int) -> None:
        super()._learn(support, labels, num_new)
        kept, kept_labels = self._ranked(support, labels, self.head)
        self.memory_features = torch.cat([self.memory_features, kept])
        self.memory_labels = torch.cat([self.memory_labels, kept_labels])

    @torch.no_grad()
    def _ranked(self, features: Tensor, labels: Tensor, scorer: torch.nn.Module) -> tuple[Tensor, Tensor]:
        """Per class, the ``memory_per_class`` samples ``scorer`` rates highest on the class's own output."""
        scorer.eval()
        logits = scorer(features)
        chosen = []
        for class_id in torch.unique(labels).tolist():
            members = torch.nonzero(labels == class_id).flatten()
            order = sort_by_score(logits[members], class_id, self.score)
            chosen.append(members[order[: self.memory_per_class]])
        index = torch.cat(chosen)
        return features[index], labels[index]


def _uniform_draw(count: int, generator: torch.Generator) -> Callable[[int], Tensor]:
    return lambda size: torch.randint(count, (size,), generator=generator)


def _balanced_draw(targets: Tensor, generator: torch.Generator) -> Callable[[int], Tensor]:
    order = torch.argsort(targets, stable=True)
    _, sizes = torch.unique(targets, return_counts=True)
    starts = torch.cumsum(sizes, 0) - sizes

    def draw(size: int) -> Tensor:
        picked = torch.randint(len(sizes), (size,), generator=generator)
        offsets = (torch.rand(size, generator=generator) * sizes[picked]).long()
        return order[starts[picked] + offsets]

    return draw


# --- training-free methods on a cosine classifier ------------------------------------------------


@dataclass(frozen=True)
class ImprintConfig:
    """Weight imprinting (Qi et al. 2018)."""

    normalize_inputs: bool = True  # average the shots' normalised features (Qi et al.); False: raw means


class ImprintLearner(FewShotLearner):
    """Weight imprinting: Qi, Brown & Lowe (CVPR 2018), "Low-Shot Learning with Imprinted Weights".

    A cosine classifier whose base rows are the imprinted weights of the basic classes' training
    features (the basic head is not a cosine classifier; TEEN replaces its base weights the same way)
    and whose new rows are imprinted from each session's shots, with no gradient step.
    """

    def __init__(self, base: BaseSession, config: ImprintConfig, seed: int = 0) -> None:
        super().__init__(base, seed)
        self.config = config
        self.classifier = CosineClassifier(self._base_rows(base))

    def _base_rows(self, base: BaseSession) -> Tensor:
        return imprint_weights(base.features, base.labels, base.num_classes, self.config.normalize_inputs)

    def _learn(self, support: Tensor, labels: Tensor, num_new: int) -> None:
        self.classifier.append(self._new_rows(support, labels - self.num_classes, num_new))

    def _new_rows(self, support: Tensor, local_labels: Tensor, num_new: int) -> Tensor:
        return imprint_weights(support, local_labels, num_new, self.config.normalize_inputs)

    @torch.no_grad()
    def logits(self, features: Tensor) -> Tensor:
        return self.classifier(features.float())


@dataclass(frozen=True)
class TeenConfig:
    """TEEN's calibration (Wang et al. 2023); defaults of its reference code's train.py."""

    shift_weight: float = 0.5  # α: share of the base-prototype mixture in a calibrated prototype
    softmax_temperature: float = 16.0  # τ of the softmax over cosine similarities to the base prototypes


class TeenLearner(ImprintLearner):
    """TEEN: Wang et al. (NeurIPS 2023), "Few-shot class-incremental learning via training-free prototype calibration".

    Prototypes are plain class means (the reference's ``replace_base_fc`` and ``update_fc_avg``);
    each new prototype is then calibrated toward the base prototypes it resembles
    (:func:`~cfer.core.calibration.calibrate_prototypes`), against the bias of few-shot prototypes
    toward being mistaken for base classes.
    """

    def __init__(self, base: BaseSession, config: TeenConfig, seed: int = 0) -> None:
        self.teen = config
        super().__init__(base, ImprintConfig(normalize_inputs=False), seed)

    def _base_rows(self, base: BaseSession) -> Tensor:
        return class_means(base.features.float(), base.labels, base.num_classes)

    def _new_rows(self, support: Tensor, local_labels: Tensor, num_new: int) -> Tensor:
        prototypes = class_means(support, local_labels, num_new)
        base = self.classifier.weight.detach()[: self.num_base]
        return calibrate_prototypes(prototypes, base, self.teen.shift_weight, self.teen.softmax_temperature)


@dataclass(frozen=True)
class ImprintFinetuneConfig:
    """Imprinting, then a short fine-tune of the new rows with the paper's distillation loss."""

    steps: int = 20  # full-batch SGD steps per session (CEC: 100, no better on validation subjects, 5x slower)
    lr: float = 0.1  # SGD learning rate, momentum 0.9 and dampening 0.9 (CEC's lr_new)
    scale: float = 16.0  # s of the cosine logits s·cos during the fine-tune (CEC's and TEEN's temperature)
    temperature: float = 3.0  # distillation temperature T
    kd_weight: float = 0.1  # distillation weight g, against the classifier before the session


class ImprintFinetuneLearner(ImprintLearner):
    """Imprinted rows refined by gradient steps, the old rows frozen (CEC's ``update_fc_ft``).

    Zhang et al. (CVPR 2021), "Few-Shot Incremental Learning with Continually Evolved Classifiers",
    reference code github.com/icoz69/CEC-CVPR2021, ``models/base/Network.py``: the new rows start
    from their imprinted values and take ``steps`` SGD steps on the session's shots, scored over
    every class seen. Here the loss is the paper's ``(1 − g)·CE + g·KD``, the teacher being the
    classifier before the session (zero-padded logits): the term keeps the new rows from claiming
    the shots more confidently than the old classes allow.
    """

    def __init__(self, base: BaseSession, config: ImprintFinetuneConfig, seed: int = 0) -> None:
        self.finetune = config
        super().__init__(base, ImprintConfig(), seed)
        self.classifier.scale = config.scale

    def _learn(self, support: Tensor, labels: Tensor, num_new: int) -> None:
        config = self.finetune
        old = self.classifier.weight.detach().clone()
        new = self._new_rows(support, labels - self.num_classes, num_new).clone().requires_grad_(True)
        optimizer = torch.optim.SGD([new], lr=config.lr, momentum=0.9, dampening=0.9)
        loss_fn = DistillationLoss(config.temperature)
        with torch.no_grad():
            teacher_logits = self.classifier(support)
        with torch.enable_grad():
            for _ in range(config.steps):
                logits = self.classifier(support, weight=torch.cat([old, new]))
                loss = loss_fn(logits, labels, teacher_logits, config.kd_weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        self.classifier.append(new.detach())


# --- the registry ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodSpec:
    """A registered few-shot method: every fact about it, in one place."""

    build: Callable[[BaseSession, Any, int], FewShotLearner]  # (base session, its config, seed) -> learner
    config_type: type  # dataclass of its settings, given as method_options[name]
    trains: bool  # takes gradient steps (else training-free)
    description: str  # one line for listings and reports


FEWSHOT_METHODS: Registry[MethodSpec] = Registry("few-shot method")
"""Few-shot methods by name: ``paper``, ``paper+memory``, ``imprint``, ``teen``, ``imprint-ft``, ``ranpac``,
``c-ranpac``, ``compose``, ``compose-ranpac``."""

FEWSHOT_METHODS.register("paper", MethodSpec(
    PaperLearner, PaperConfig, trains=True,
    description="the paper: a new unit trained on the K shots alone, (1-g)CE + gKD, basic model as teacher"))
FEWSHOT_METHODS.register("paper+memory", MethodSpec(
    PaperMemoryLearner, PaperMemoryConfig, trains=True,
    description="the paper with the PSMR memory replayed and class-balanced batches"))
FEWSHOT_METHODS.register("imprint", MethodSpec(
    ImprintLearner, ImprintConfig, trains=False,
    description="weight imprinting on a cosine classifier (Qi et al. 2018), no gradient step"))
FEWSHOT_METHODS.register("teen", MethodSpec(
    TeenLearner, TeenConfig, trains=False,
    description="TEEN (Wang et al. 2023): class-mean prototypes calibrated toward similar base prototypes"))
FEWSHOT_METHODS.register("imprint-ft", MethodSpec(
    ImprintFinetuneLearner, ImprintFinetuneConfig, trains=True,
    description="imprinting, then the new rows fine-tuned with the paper's loss (CEC's ft_cos)"))
FEWSHOT_METHODS.register("ranpac", MethodSpec(
    RanPACLearner, RanPACConfig, trains=False,
    description="RanPAC (McDonnell et al. 2023): random ReLU projection, ridge head on accumulated statistics"))
FEWSHOT_METHODS.register("c-ranpac", MethodSpec(
    CRanPACLearner, CRanPACConfig, trains=False,
    description="C-RanPAC (Goswami et al. 2024): Gaussians calibrated toward similar base classes, sampled into RanPAC"))
FEWSHOT_METHODS.register("compose", MethodSpec(
    ComposeLearner, ComposeConfig, trains=False,
    description="cfer: each compound's prototype starts at its components' AU prior and moves toward its shots"))
FEWSHOT_METHODS.register("compose-ranpac", MethodSpec(
    ComposeRanPACLearner, ComposeRanPACConfig, trains=False,
    description="cfer's prior on RanPAC: each compound's Gaussian calibrated toward its components, sampled in"))


def method_config(name: str, options: Mapping[str, Any] | None = None) -> Any:
    """The settings of method ``name``: its config dataclass's defaults overridden by ``options``.

    Raises:
        KeyError: If ``name`` is unknown; the message lists the known methods.
        ConfigError: If an option is unknown (the message names the valid ones) or of the wrong type.
    """
    spec = FEWSHOT_METHODS[name]
    return config_from_dict(spec.config_type, dict(options or {}), source=f"method_options[{name!r}]")


def check_method_options(methods: Iterable[str], options: Mapping[str, Mapping[str, Any]]) -> None:
    """Fails early on an unknown method, options for a method that does not run, or a bad option.

    Raises:
        KeyError: If a method name is unknown.
        ConfigError: If ``options`` names a method not in ``methods``, or an option is invalid.
    """
    methods = list(methods)
    for name in methods:
        method_config(name, options.get(name))
    stray = sorted(set(options) - set(methods))
    if stray:
        raise ConfigError(f"method_options for {stray}, which are not among the methods run ({methods})")


def create_learner(name: str, base: BaseSession, options: Mapping[str, Any] | None = None,
                   seed: int = 0) -> FewShotLearner:
    """Builds a registered method on a base session.

    Args:
        name: One of :data:`FEWSHOT_METHODS`.
        base: The base session.
        options: Fields of the method's config dataclass.
        seed: The learner's seed.

    Returns:
        A learner that knows the base classes only.

    Raises:
        KeyError: If ``name`` is unknown; the message lists the known methods.
        ConfigError: If an option is invalid.
    """
    return FEWSHOT_METHODS[name].build(base, method_config(name, options), seed)
