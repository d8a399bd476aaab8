"""``cfer train-incremental``: the basic phase, then compound classes one at a time, resumable.

:func:`run_incremental` trains (or reuses) the basic phase on one fold, builds one benchmark per order
of the compound classes (:mod:`cfer.continual.benchmark`) and runs every requested strategy over it,
each from a fresh copy of the basic model. Experience 0 (the basic classes) is trained by the basic
phase; the strategies see it with zero epochs, which lets each register the basic classes its own
way (PSMR ranks them with the basic model, iCaRL computes exemplars and class means, LwF snapshots the
model) without changing the weights.

Layout of ``out_dir``::

    config.yaml                       resolved config (a rerun with other settings is refused)
    basic/                            the basic phase (cfer.training.basic), reused when finished
    runs/<strategy>/order_<k>/
        state.pt                      after each experience: everything needed to resume
        result.json                   the finished run (state.pt is then removed)
        logs/session_<n>/             Avalanche loggers (text, CSV, TensorBoard)
    results.json, results.md, accuracy_vs_classes.png, runs/.../confusion/step_XX.png

Killed at any point and started again with the same ``out_dir``, a run continues from its last
finished experience and, on the CPU with the same seed, ends with the same metrics as an
uninterrupted run (see :mod:`strategies.checkpoint`). Every fact about a strategy (offline, early
stopping, scenario, resume) comes from its entry in :data:`strategies.STRATEGIES`.

A session is three steps: :func:`open_session` (the data, the basic phase, the feature cache: what
the runs share), :func:`run_in_session` per (strategy, order) run, and :func:`report_session`;
:mod:`cfer.continual.sweep` runs the same steps as Ray tasks.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from cfer.config import check_resumable, save_config
from cfer.continual.benchmark import (
    SPLITS,
    IncrementalBenchmark,
    build_benchmark,
    draw_compound_orders,
    make_transforms,
    stream_splits,
)
from cfer.continual.config import IncrementalConfig
from cfer.continual.evaluation import RunLoggers, make_evaluator, read_step_metrics
from cfer.continual.reports import describe_protocol, summarize_run, write_reports
from cfer.core.distillation import frozen_copy
from cfer.core.sorting import representative_memory_size
from cfer.core.trunk import (
    BackboneSplit,
    FeatureCache,
    TailClassifier,
    cache_decision,
    split_backbone,
    split_holding,
)
from cfer.data.dataset import FaceExpressionDataset, concat_datasets
from cfer.data.reading import write_skipped
from cfer.data.sources import load_dataset
from cfer.data.splits import split_policy
from cfer.io import read_json, write_json
from cfer.models.checkpoint import save_checkpoint
from cfer.models.classifier import freeze_backbone
from cfer.reports import affect_metrics
from cfer.taxonomy import COMPOUND
from cfer.training.basic import basic_classes, load_basic_model, run_basic_phase
from cfer.training.loop import resolve_device
from strategies import (
    STRATEGIES,
    BoundedRegressionPlugin,
    RestoreContext,
    Strategy,
    StrategySpec,
    StreamCheckpoint,
    TrainingThroughputPlugin,
    ValidationEarlyStoppingPlugin,
    create_strategy,
    hooked_modules,
    seed_everything,
    trained_model,
)

__all__ = [
    "IncrementalSession",
    "SessionFacts",
    "check_session",
    "compound_orders",
    "finished_run",
    "open_session",
    "order_count",
    "report_session",
    "run_directory",
    "run_in_session",
    "run_incremental",
    "run_stream",
]

logger = logging.getLogger(__name__)

# settings that may change between sessions of one run
# (runs are independent per strategy and order, and order k is the same whatever the count)
_RESUMABLE_CHANGES = ("max_experiences", "device", "progress", "strategies", "orders", "confusion_plots")


def run_incremental(config: IncrementalConfig, out_dir: str | Path) -> dict[str, Any]:
    """Runs the basic phase and the continual phase for every strategy and order; resumes.

    Args:
        config: The settings.
        out_dir: Run directory; a previous, interrupted run there is continued.

    Returns:
        The summary also written to ``out_dir/results.json``: per strategy, the per-order runs and
        their aggregate (overall accuracy, final accuracies, forgetting, BWT, per-step mean and std).

    Raises:
        KeyError: If a strategy name is unknown (the message lists the known ones).
        ValueError: If ``out_dir`` holds a run with other settings, or the class order is invalid.
    """
    out_dir = check_session(config, out_dir)
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    session = open_session(config, out_dir)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in config.strategies}
    for order_index in range(order_count(config)):
        benchmarks: dict[bool, IncrementalBenchmark] = {}  # one per order, shared by its strategies
        for name in config.strategies:
            runs[name].append(run_in_session(session, config, out_dir, name, order_index, benchmarks))
    return report_session(config, out_dir, session.facts, runs, wall_seconds=time.perf_counter() - wall_start,
                          cpu_seconds=time.process_time() - cpu_start)


@dataclass(frozen=True)
class SessionFacts:
    """What the reports of a run directory say about what its runs share."""

    compounds: tuple[str, ...]  # the compound classes of the data, in taxonomy order
    basic: dict[str, Any]  # the basic phase's summary
    subjects: dict[str, list[int]]  # the subjects of each split
    feature_cache: dict[str, Any]  # whether the frozen trunk is cached, why, and its size


@dataclass(frozen=True)
class IncrementalSession:
    """What every (strategy, order) run of a run directory shares, built once by :func:`open_session`."""

    dataset: FaceExpressionDataset  # the basic and compound images
    basic_names: tuple[str, ...]  # the basic classes, in output order
    basic_model: torch.nn.Module  # the basic phase's model; every run starts from a copy
    splits: np.ndarray  # (N,) the side of every image (see cfer.continual.benchmark.stream_splits)
    split: BackboneSplit | None  # where the backbone is cut for the feature cache
    cache: FeatureCache | None  # the frozen trunk's activations of every image
    facts: SessionFacts
    # earlier cuts with their activations, by the trunk modules a strategy hooks
    cuts: dict[tuple[str, ...], tuple[BackboneSplit, FeatureCache]] = dataclasses.field(default_factory=dict)


def check_session(config: IncrementalConfig, out_dir: str | Path) -> Path:
    """Refuses unknown strategies and a run directory that holds other settings, before any work.

    Returns:
        ``out_dir``, created.
    """
    for name in config.strategies:
        STRATEGIES.key(name)  # an unknown name fails before any training, listing the known ones
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_resumable(config, out_dir, _RESUMABLE_CHANGES)
    return out_dir


def open_session(config: IncrementalConfig, out_dir: Path) -> IncrementalSession:
    """Reads the data, trains (or reuses) the basic phase in ``out_dir/basic`` and caches the frozen trunk.

    Raises:
        ValueError: If the data cannot be split, or the class order is not one of the data's compounds.
    """
    basic_names = basic_classes(config.basic)
    dataset, compounds = _stream_data(config, basic_names)
    split_policy(dataset, config.basic.data.split)  # a dataset that cannot be split fails before any file is written
    save_config(config, out_dir / "config.yaml")
    write_skipped(dataset.skipped, out_dir)
    if config.class_order is not None and sorted(config.class_order) != sorted(compounds):
        raise ValueError(f"class_order must be a permutation of the compound classes of the data {list(compounds)}")
    basic_model, basic_summary, splits = _basic_phase(config, dataset, basic_names, out_dir / "basic")
    device = resolve_device(config.device)
    basic_model.to(device)
    split, cache, cache_info = _feature_cache(config, basic_model, dataset, device)
    subject_ids = dataset.subject_ids.numpy()
    subjects = {name: sorted({int(s) for s in subject_ids[splits == code]}) if dataset.subjects_known else []
                for code, name in enumerate(SPLITS)}
    return IncrementalSession(dataset, basic_names, basic_model, splits, split, cache,
                   SessionFacts(compounds, basic_summary, subjects, cache_info))


def order_count(config: IncrementalConfig) -> int:
    """How many orders of the compound classes a session runs: one for ``class_order``, else ``orders``."""
    return 1 if config.class_order is not None else config.orders


def compound_orders(config: IncrementalConfig, compounds: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The orders of arrival of the compound classes: ``class_order``, or ``orders`` random ones.

    Order ``k`` is the same whatever the number of orders.
    """
    if config.class_order is not None:
        return [tuple(config.class_order)]
    return draw_compound_orders(compounds, order_count(config), config.seed)


def run_directory(out_dir: str | Path, name: str, order_index: int) -> Path:
    """The folder of one (strategy, order) run."""
    return Path(out_dir) / "runs" / name / f"order_{order_index}"


def finished_run(run_dir: str | Path) -> dict[str, Any] | None:
    """The result of a run that finished earlier, or None: a finished run is never trained again."""
    result_path = Path(run_dir) / "result.json"
    return read_json(result_path) if result_path.exists() else None


def run_in_session(session: IncrementalSession, config: IncrementalConfig, out_dir: str | Path, name: str,
                   order_index: int, benchmarks: dict[bool, IncrementalBenchmark] | None = None) -> dict[str, Any]:
    """Runs (or resumes, or reuses) strategy ``name`` over order ``order_index`` of a session.

    Args:
        session: What the runs share.
        config: The settings.
        out_dir: The run directory.
        name: Strategy name.
        order_index: Which order of :func:`compound_orders`.
        benchmarks: This order's streams already built, by whether they hold cached activations;
            a new one is added.

    Returns:
        The run's result (see :func:`run_stream`).
    """
    order = compound_orders(config, session.facts.compounds)[order_index]
    device = resolve_device(config.device)
    split, cache = _strategy_cut(session, config, name, device)
    key = None if split is None else split.trainable_blocks
    benchmarks = {} if benchmarks is None else benchmarks
    if key not in benchmarks:
        data_config = session.basic_model.data_config
        benchmarks[key] = build_benchmark(session.dataset, session.basic_names, order, session.splits,
                                          data_config["mean"], data_config["std"], config.augment, cache)
    return run_stream(name, benchmarks[key], session.basic_model.to(device), config,
                      run_directory(out_dir, name, order_index), device, config.seed * 1000 + order_index, split)


def _strategy_cut(session: IncrementalSession, config: IncrementalConfig, name: str, device: torch.device
                  ) -> tuple[BackboneSplit | None, FeatureCache | None]:
    """Where strategy ``name`` reads the backbone: the session's cached cut, an earlier one, or the images (Nones).

    A strategy that hooks modules inside the session's trunk (``ranpac-layers``) gets the latest cut
    whose tail holds them, with its own activations of every image, computed once per session.
    """
    if session.cache is None or session.split is None or not STRATEGIES[name].trunk_inputs:
        return None, None
    modules = hooked_modules(name, _configured_options(name, STRATEGIES[name], config))
    if all(session.split.tail.holds(path) for path in modules):
        return session.split, session.cache
    if modules not in session.cuts:  # traced and cached once per session, not once per order
        preprocess = _eval_preprocess(config, session.basic_model)
        example = preprocess(session.dataset.images[:2]).to(device)
        split = split_holding(session.basic_model.to(device).backbone, config.trainable_blocks, example, modules)
        same = next((cut for cut in session.cuts.values() if cut[0].trainable_blocks == split.trainable_blocks), None)
        cache = same[1] if same is not None else _build_cache(config, split, session.dataset, preprocess, device)
        logger.info("%s hooks %s: %s; %s", name, ", ".join(modules), split.describe(), cache.describe())
        session.cuts[modules] = (split, cache)
    return session.cuts[modules]


def report_session(config: IncrementalConfig, out_dir: str | Path, facts: SessionFacts,
                   runs: dict[str, list[dict[str, Any]]], wall_seconds: float, cpu_seconds: float) -> dict[str, Any]:
    """Writes a session's reports (see :func:`cfer.continual.reports.write_reports`) and returns its summary."""
    return write_reports(out_dir, runs, basic=facts.basic, subjects=facts.subjects, wall_seconds=wall_seconds,
                         cpu_seconds=cpu_seconds, feature_cache=facts.feature_cache,
                         confusion_plots=config.confusion_plots, protocol=_protocol(config))


def _protocol(config: IncrementalConfig) -> dict[str, Any]:
    """The run's protocol, and what it chose on the test subjects it reports."""
    return describe_protocol(config.protocol, _basic_config(config).select_fold_on == "test",
                             config.protocol == "reference" and config.patience > 0)


def run_stream(
    name: str,
    benchmark: IncrementalBenchmark,
    basic_model: torch.nn.Module,
    config: IncrementalConfig,
    run_dir: str | Path,
    device: torch.device,
    seed: int,
    split: BackboneSplit | None = None,
) -> dict[str, Any]:
    """Runs one strategy over one benchmark, resuming from ``run_dir/state.pt`` if present.

    Args:
        name: Strategy name in :data:`strategies.STRATEGIES`.
        benchmark: The stream.
        basic_model: The basic-phase model; copied, never modified.
        config: The settings.
        run_dir: Folder of this run.
        device: Where to train.
        seed: Seed of the run's randomness (new head units, shuffling, augmentation, sampling).
        split: Where the backbone was cut for a feature cache (the benchmark then holds the
            trunk's activations, and the strategy trains the tail and head only); None trains on images.

    Returns:
        The run's per-step records and summary (see :func:`cfer.continual.reports.summarize_run`);
        ``complete`` is False when ``config.max_experiences`` stopped it early.
    """
    run_dir = Path(run_dir)
    finished = finished_run(run_dir)
    if finished is not None:
        logger.info("%s: finished earlier; reusing its result.json", run_dir)
        return finished
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = STRATEGIES[name]
    seed_everything(seed)
    full_model = copy.deepcopy(basic_model).to(device)
    freeze_backbone(full_model, config.trainable_blocks, train_batchnorm=config.basic.model.train_batchnorm)
    model = _student(full_model, split).train()
    checkpoint = StreamCheckpoint(run_dir / "state.pt", spec.state)
    checkpoint.load_model(model)
    # after any regrowth of the head, so that it holds the model's current parameters
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    memory_size = representative_memory_size(len(benchmark.data["train"]), config.memory_fraction)
    monitors = _Monitors(TrainingThroughputPlugin(), _early_stopping(spec, benchmark, config))
    loggers = RunLoggers(run_dir / "logs", progress=config.progress)
    try:
        strategy = create_strategy(
            name,
            model,
            optimizer,
            train_mb_size=config.batch_size,
            train_epochs=config.epochs,
            eval_mb_size=config.eval_batch_size,
            device=device,
            evaluator=make_evaluator(len(benchmark.classes), loggers),
            plugins=[*monitors.plugins(), *checkpoint.plugins(),
                     *_regression_plugins(spec, benchmark, _student(basic_model, split), config)],
            memory_size=memory_size,
            **_strategy_options(name, spec, benchmark, config),
        )
        steps = checkpoint.restore(strategy, RestoreContext(benchmark.data["train"], _student(basic_model, split)))
        scenario = benchmark.legacy_scenario() if spec.scenario == "legacy" else benchmark.scenario
        if spec.offline:
            steps = _run_offline(strategy, scenario, benchmark, monitors)
        last = benchmark.n_experiences if config.max_experiences is None else min(config.max_experiences,
                                                                                    benchmark.n_experiences)
        for index in tqdm(range(len(steps), last), desc=f"{name} {run_dir.name}", initial=len(steps), total=last,
                          dynamic_ncols=True, leave=False):
            steps.append(_run_experience(strategy, model, scenario, index, benchmark, monitors, config))
            checkpoint.save(strategy, trained_model(strategy, model), steps)
    finally:
        loggers.close()
    result = summarize_run(name, benchmark, steps, memory_size, offline=spec.offline)
    if result["complete"] and spec.exports_model:
        trained = trained_model(strategy, model)
        final = trained.into(full_model) if isinstance(trained, TailClassifier) else trained
        # The final model, loadable with cfer.models.load_checkpoint (and so by cfer gradcam).
        save_checkpoint(final, run_dir / "model.safetensors",
                        {"classes": list(benchmark.classes), "phase": "incremental", "strategy": name})
    if result["complete"]:
        write_json(run_dir / "result.json", result)
        checkpoint.discard()
    return result


@dataclass(frozen=True)
class _Monitors:
    """Plugins that watch a run's steps: time per trained image, and validation early stopping."""

    throughput: TrainingThroughputPlugin
    early_stopping: ValidationEarlyStoppingPlugin | None

    def plugins(self) -> list[Any]:
        # the throughput clock first, so that it stops before the validation pass of early stopping
        return [self.throughput] + ([self.early_stopping] if self.early_stopping is not None else [])

    def record(self, trained: bool) -> dict[str, Any]:
        """What they saw during the last training call (nothing when it trained no epoch)."""
        stopper = self.early_stopping if trained else None
        best = stopper.best_epoch if stopper is not None else None
        kept = None if best is None or best < 0 else int(best)
        return {
            "best_epoch": kept,
            "valid_history": list(stopper.history) if stopper is not None else [],
            # the validation metric of the weights the step kept: what budgets are chosen on
            "valid_metric": stopper.history[kept] if stopper is not None and kept is not None else None,
            "train_images": self.throughput.images if trained else 0,
            "train_loop_seconds": self.throughput.seconds if trained else 0.0,
        }


def _feature_cache(
    config: IncrementalConfig, basic_model: torch.nn.Module, dataset: Any, device: torch.device
) -> tuple[BackboneSplit | None, FeatureCache | None, dict[str, Any]]:
    """The backbone's cut and its trunk's activations of every image (or Nones), and what was decided, why."""
    cached, reason = cache_decision(config.feature_cache, config.augment.enabled)
    preprocess = _eval_preprocess(config, basic_model)
    try:
        example = preprocess(dataset.images[:2]).to(device)
        split = split_backbone(basic_model.backbone, config.trainable_blocks, example) if cached else None
    except ValueError as error:
        if config.feature_cache.mode == "always":
            raise
        split, reason = None, str(error)
    if split is None:
        logger.info("feature cache off: %s", reason)
        return None, None, {"used": False, "reason": reason}
    cache = _build_cache(config, split, dataset, preprocess, device)
    logger.info("feature cache on (%s): %s; %s", reason, split.describe(), cache.describe())
    return split, cache, {"used": True, "reason": reason, "cut": split.describe(), "activations": cache.describe(),
                          "bytes": cache.nbytes}


def _eval_preprocess(config: IncrementalConfig, basic_model: torch.nn.Module) -> Any:
    """The basic model's evaluation transform: uint8 images ``(batch, 3, H, W)`` to its normalised input."""
    return make_transforms(basic_model.data_config["mean"], basic_model.data_config["std"], config.augment)[1]


def _build_cache(config: IncrementalConfig, split: BackboneSplit, dataset: Any, preprocess: Any,
                 device: torch.device) -> FeatureCache:
    """The trunk's activations of every image of ``dataset``, as ``config.feature_cache`` says to keep them."""
    dtype = torch.float16 if config.feature_cache.dtype == "float16" else torch.float32
    return FeatureCache.build(split, dataset.images, preprocess, repr(preprocess), config.eval_batch_size, device,
                              dtype, config.feature_cache.directory)


def _student(model: torch.nn.Module, split: BackboneSplit | None) -> torch.nn.Module:
    """What a strategy trains: the whole model, or with a feature cache, its tail and head over activations."""
    if split is None:
        return model
    return TailClassifier(split.apply_to(model.backbone).tail, model.head, getattr(model, "regressor", None))


def _regression_plugins(spec: StrategySpec, benchmark: IncrementalBenchmark, basic_student: torch.nn.Module,
                        config: IncrementalConfig) -> list[BoundedRegressionPlugin]:
    """The teacher-bounded valence/arousal term against the basic model, where the model and data have them."""
    if (getattr(basic_student, "regressor", None) is None or benchmark.valence_arousal is None
            or not spec.keeps_regression or config.regression_weight == 0):
        return []
    return [BoundedRegressionPlugin(frozen_copy(basic_student), benchmark.valence_arousal["train"],
                                    config.regression_weight, config.regression_margin, config.regression_nu)]


@torch.no_grad()
def _affect_scores(model: torch.nn.Module, benchmark: IncrementalBenchmark, seen: int,
                   device: torch.device, batch_size: int) -> dict[str, Any] | None:
    """Valence/arousal metrics of the test subjects: the images of the classes seen so far, and all of them."""
    if getattr(model, "regressor", None) is None or benchmark.valence_arousal is None:
        return None
    test = benchmark.data["test"].eval()
    loader = torch.utils.data.DataLoader(test, batch_size=batch_size, shuffle=False,
                                         generator=torch.Generator())  # leaves the global generator alone
    was_training = model.training
    model.eval()
    outputs = torch.cat([model.regress(batch[0].to(device)).float().cpu() for batch in loader])
    model.train(was_training)
    targets = benchmark.valence_arousal["test"]
    mask = torch.as_tensor(list(test.targets)) < seen
    return {"seen": affect_metrics(outputs[mask].numpy(), targets[mask].numpy()),
            "all": affect_metrics(outputs.numpy(), targets.numpy())}


def _stream_data(config: IncrementalConfig, basic_names: tuple[str, ...]) -> tuple[FaceExpressionDataset, tuple[str, ...]]:
    """The images of the basic classes and of every compound class the data has, and those compounds.

    With ``compound_data`` the compound images come from that second source (its people are never
    taken for the basic source's). Compound classes without images (RAF-DB has 11 of the 15) are
    left out of the stream, with a log line.
    """
    if config.compound_data is None:
        dataset = load_dataset(config.basic.data, basic_names + COMPOUND)
    else:
        basic = load_dataset(config.basic.data, basic_names)
        compound = load_dataset(config.compound_data, COMPOUND)
        dataset = concat_datasets([basic, compound], shared_subjects=config.compound_data == config.basic.data)
    counts = dataset.class_counts()
    compounds = tuple(name for name in COMPOUND if counts.get(name, 0) > 0)
    missing = [name for name in COMPOUND if name not in compounds]
    if not compounds:
        raise ValueError("the data has no image of any compound class; set compound_data (e.g. --set "
                         "compound_data.source=csv --set compound_data.root=FILE) or use a source with compounds")
    if missing:
        logger.info("the data has no image of %s; the stream adds the %d other compound classes", missing,
                    len(compounds))
    return dataset.select_classes(basic_names + compounds), compounds


def _basic_phase(
    config: IncrementalConfig, dataset: Any, basic_names: tuple[str, ...], basic_dir: Path
) -> tuple[torch.nn.Module, dict[str, Any], np.ndarray]:
    """The basic-phase model (trained here unless ``basic_dir`` holds a finished run), its summary and the
    side of every image (see :func:`cfer.continual.benchmark.stream_splits`)."""
    if not ((basic_dir / "model.safetensors").exists() and (basic_dir / "metrics.json").exists()):
        run_basic_phase(_basic_config(config), basic_dir, dataset=dataset)
    summary = read_json(basic_dir / "metrics.json")
    model, metadata = load_basic_model(basic_dir)
    if list(metadata["classes"]) != list(basic_names):
        raise ValueError(f"{basic_dir} holds a model of classes {metadata['classes']}, expected {list(basic_names)}")
    basic = config.basic
    return model, summary, stream_splits(dataset, basic_names, int(summary["best_fold"]), basic.folds,
                                         basic.val_fraction, basic.seed, basic.data.split)


def _basic_config(config: IncrementalConfig) -> Any:
    """The basic phase's settings; the reference's protocol runs every fold and keeps the best on its test subjects."""
    if config.protocol != "reference":
        return config.basic
    return dataclasses.replace(config.basic, select_fold_on="test", fold=None)


def _early_stopping(
    spec: StrategySpec, benchmark: IncrementalBenchmark, config: IncrementalConfig
) -> ValidationEarlyStoppingPlugin | None:
    if config.patience <= 0 or not spec.early_stops:
        return None
    return ValidationEarlyStoppingPlugin(_chosen_on(benchmark, config), config.patience,
                                         config.early_stopping_metric, config.eval_batch_size)


def _chosen_on(benchmark: IncrementalBenchmark, config: IncrementalConfig) -> Any:
    """The split a step's choices score: validation, or under the reference protocol the very test images it reports."""
    return benchmark.data["test" if config.protocol == "reference" else "valid"]


def _strategy_options(
    name: str, spec: StrategySpec, benchmark: IncrementalBenchmark, config: IncrementalConfig
) -> dict[str, Any]:
    options = _configured_options(name, spec, config)
    if spec.needs_total_classes:
        options.setdefault("total_num_classes", len(benchmark.classes))
    if spec.needs_class_names:
        options.setdefault("class_names", tuple(benchmark.classes))
    if spec.needs_validation:
        options.setdefault("validation", _chosen_on(benchmark, config))
    return options


def _configured_options(name: str, spec: StrategySpec, config: IncrementalConfig) -> dict[str, Any]:
    """The strategy's config fields that the run's settings give: its protocol's, then the user's."""
    reference = spec.reference_options if config.protocol == "reference" else {}
    return {**reference, **config.strategy_options.get(name, {})}


def _run_experience(
    strategy: Strategy,
    model: torch.nn.Module,
    scenario: Any,
    index: int,
    benchmark: IncrementalBenchmark,
    monitors: _Monitors,
    config: IncrementalConfig,
) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    experience = scenario.train_stream[index]
    epochs = strategy.train_epochs
    if index == 0:
        # the basic phase trained these classes; zero epochs only lets the strategy register them
        strategy.train_epochs = 0
    try:
        strategy.train(experience)
    finally:
        strategy.train_epochs = epochs
    train_seconds = time.perf_counter() - wall
    results = strategy.eval(scenario.test_stream[: index + 1])
    step = read_step_metrics(results, index + 1)
    affect = _affect_scores(trained_model(strategy, model), benchmark, benchmark.num_basic + index,
                            strategy.device, config.eval_batch_size)
    if affect is not None:
        step["affect"] = affect
    step.update(
        step=index,
        new_classes=list(benchmark.classes_of(index)),
        num_classes=benchmark.num_basic + index,
        epochs=0 if index == 0 else int(strategy.clock.train_exp_epochs),
        **monitors.record(trained=index > 0),
        train_seconds=train_seconds,
        wall_seconds=time.perf_counter() - wall,
        cpu_seconds=time.process_time() - cpu,
    )
    logger.info(
        "step %d (+%s): accuracy %.3f on %d classes, %.1f s",
        index,
        ", ".join(step["new_classes"]),
        step["accuracy"],
        step["num_classes"],
        step["wall_seconds"],
    )
    return step


def _run_offline(
    strategy: Strategy, scenario: Any, benchmark: IncrementalBenchmark, monitors: _Monitors
) -> list[dict[str, Any]]:
    """Trains once on the whole stream (joint training), then scores it on every prefix of the stream.

    Step ``k``'s record is the final model's accuracy on the classes of experiences ``0..k``, so
    its curve is comparable with the continual strategies'. One evaluation of the whole test stream
    gives every prefix: labels are numbered in order of arrival, so the images of the first ``k``
    experiences are the first rows of the confusion matrix. The training time is on the last step.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    strategy.train(scenario.train_stream)
    train_seconds = time.perf_counter() - wall
    full = read_step_metrics(strategy.eval(scenario.test_stream), benchmark.n_experiences)
    wall_seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    matrix = np.asarray(full["confusion_matrix"])
    steps = []
    for index in range(benchmark.n_experiences):
        seen = benchmark.num_basic + index
        prefix = np.zeros_like(matrix)
        prefix[:seen] = matrix[:seen]
        last = index == benchmark.n_experiences - 1
        steps.append(
            {
                "accuracy": float(np.trace(prefix) / prefix.sum()),
                "experience_accuracy": full["experience_accuracy"][: index + 1],
                "confusion_matrix": prefix.tolist(),
                "step": index,
                "new_classes": list(benchmark.classes_of(index)),
                "num_classes": seen,
                "epochs": int(strategy.clock.train_exp_epochs) if last else 0,
                **monitors.record(trained=last),
                "train_seconds": train_seconds if last else 0.0,
                "wall_seconds": wall_seconds if last else 0.0,
                "cpu_seconds": cpu_seconds if last else 0.0,
            }
        )
    logger.info("joint training on %d classes: final accuracy %.3f, %.1f s", len(benchmark.classes),
                steps[-1]["accuracy"], train_seconds)
    return steps
