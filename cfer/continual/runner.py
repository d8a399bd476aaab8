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
uninterrupted run (see :mod:`cfer.continual.state`).
"""

from __future__ import annotations

import copy
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from avalanche.core import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate

from cfer.config import config_to_dict, save_config
from cfer.continual.benchmark import IncrementalBenchmark, build_benchmark, draw_compound_orders, subject_split
from cfer.continual.config import IncrementalConfig
from cfer.continual.early_stopping import ValidationEarlyStoppingPlugin
from cfer.continual.evaluation import RunLoggers, make_evaluator, read_step_metrics
from cfer.continual.reports import summarize_run, write_reports
from cfer.continual.state import RestoreContext, get_strategy_state
from cfer.data.sources import load_dataset
from cfer.io import atomic_write, read_json, write_json
from cfer.models.checkpoint import save_checkpoint
from cfer.models.classifier import freeze_backbone
from cfer.taxonomy import COMPOUND
from cfer.training.basic import basic_classes, load_basic_model, run_basic_phase
from cfer.training.loop import resolve_device
from strategies import STRATEGIES, create_strategy, representative_memory_size

__all__ = ["run_incremental", "run_stream"]

logger = logging.getLogger(__name__)

STATE_FORMAT = 1
# strategies whose config needs the size of the whole stream
_NEEDS_TOTAL_CLASSES = ("cfer", "cfer-no-kd", "cfer-random-memory", "icarl")
# iCaRL classifies by nearest class mean, computed only at the end of an experience, so a
# validation score during its training would rank stale means
_NO_EARLY_STOPPING = ("icarl",)
# offline upper bounds: trained once on the whole stream, then evaluated on every prefix of it
_OFFLINE = ("joint",)
# settings that may change between sessions of one run
_RESUMABLE_CHANGES = ("max_experiences", "device", "progress", "strategies", "orders")
# (runs are independent per strategy and order, and order k is the same whatever the count)


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
    unknown = [name for name in config.strategies if name not in STRATEGIES]
    if unknown:
        raise KeyError(f"unknown strategies {unknown}; known strategies: {sorted(STRATEGIES)}")
    if config.class_order is not None and sorted(config.class_order) != sorted(COMPOUND):
        raise ValueError(f"class_order must be a permutation of the compound classes {list(COMPOUND)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_resumable(config, out_dir)
    save_config(config, out_dir / "config.yaml")
    wall_start, cpu_start = time.perf_counter(), time.process_time()

    basic_names = basic_classes(config.basic)
    dataset = load_dataset(config.basic.data, basic_names + COMPOUND)
    basic_dir = out_dir / "basic"
    if not ((basic_dir / "model.safetensors").exists() and (basic_dir / "metrics.json").exists()):
        run_basic_phase(config.basic, basic_dir, dataset=dataset)
    basic_summary = read_json(basic_dir / "metrics.json")
    basic_model, metadata = load_basic_model(basic_dir)
    if list(metadata["classes"]) != list(basic_names):
        raise ValueError(f"{basic_dir} holds a model of classes {metadata['classes']}, expected {list(basic_names)}")
    subjects = _subjects(config, dataset, basic_names, basic_dir, int(basic_summary["best_fold"]))

    orders = (
        [tuple(config.class_order)]
        if config.class_order is not None
        else draw_compound_orders(COMPOUND, config.orders, config.seed)
    )
    device = resolve_device(config.device)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in config.strategies}
    for order_index, order in enumerate(orders):
        benchmark = build_benchmark(
            dataset,
            basic_names,
            order,
            subjects,
            basic_model.data_config["mean"],
            basic_model.data_config["std"],
            config.augment,
        )
        for name in config.strategies:
            run_dir = out_dir / "runs" / name / f"order_{order_index}"
            seed = config.seed * 1000 + order_index
            runs[name].append(run_stream(name, benchmark, basic_model, config, run_dir, device, seed))
    return write_reports(
        out_dir,
        runs,
        basic=basic_summary,
        subjects=subjects,
        wall_seconds=time.perf_counter() - wall_start,
        cpu_seconds=time.process_time() - cpu_start,
    )


def run_stream(
    name: str,
    benchmark: IncrementalBenchmark,
    basic_model: torch.nn.Module,
    config: IncrementalConfig,
    run_dir: str | Path,
    device: torch.device,
    seed: int,
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

    Returns:
        The run's per-step records and summary (see :func:`cfer.continual.reports.summarize_run`);
        ``complete`` is False when ``config.max_experiences`` stopped it early.
    """
    run_dir = Path(run_dir)
    result_path, state_path = run_dir / "result.json", run_dir / "state.pt"
    if result_path.exists():
        logger.info("%s: finished earlier; reusing %s", run_dir, result_path)
        return read_json(result_path)
    run_dir.mkdir(parents=True, exist_ok=True)
    _seed_everything(seed)
    model = copy.deepcopy(basic_model).to(device)
    freeze_backbone(model, config.trainable_blocks, train_batchnorm=config.basic.model.train_batchnorm)
    model.train()
    codec = get_strategy_state(name)
    saved: dict[str, Any] | None = None
    if state_path.exists():
        if codec is None:
            logger.warning("%s: strategy %r cannot resume mid-stream; starting it again", run_dir, name)
        else:
            saved = torch.load(state_path, weights_only=True)
            if saved.get("format") != STATE_FORMAT:
                raise ValueError(f"{state_path} has format {saved.get('format')}, expected {STATE_FORMAT}")
            model.add_classes(int(saved["num_classes"]) - model.num_classes)
            model.load_state_dict(saved["model"])
    # after any regrowth of the head, so that it holds the model's current parameters
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    loggers = RunLoggers(run_dir / "logs", progress=config.progress)
    try:
        optimizer_loader = _OptimizerStateLoader(saved["optimizer"] if saved is not None else None)
        plugins: list[SupervisedPlugin] = [optimizer_loader]
        early_stopping = None
        if config.patience > 0 and name not in _NO_EARLY_STOPPING:
            early_stopping = ValidationEarlyStoppingPlugin(
                benchmark.data["valid"], config.patience, config.early_stopping_metric, config.eval_batch_size
            )
            plugins.append(early_stopping)
        options = dict(config.strategy_options.get(name, {}))
        if name in _NEEDS_TOTAL_CLASSES:
            options.setdefault("total_num_classes", len(benchmark.classes))
        memory_size = representative_memory_size(len(benchmark.data["train"]), config.memory_fraction)
        strategy = create_strategy(
            name,
            model,
            optimizer,
            train_mb_size=config.batch_size,
            train_epochs=config.epochs,
            eval_mb_size=config.eval_batch_size,
            device=device,
            evaluator=make_evaluator(len(benchmark.classes), loggers),
            plugins=plugins,
            memory_size=memory_size,
            **options,
        )
        scenario = benchmark.legacy_scenario() if name == "icarl" else benchmark.scenario
        steps: list[dict[str, Any]] = []
        if saved is not None and codec is not None:
            steps = list(saved["steps"])
            for key, value in saved["clock"].items():
                setattr(strategy.clock, key, int(value))
            codec.restore(strategy, saved["strategy"], RestoreContext(benchmark.data["train"], basic_model))
            # Avalanche maps the optimizer's parameters by name on its first call, which must come
            # before the head grows (cfer grows it earlier than Avalanche's own first call)
            strategy.make_optimizer(reset_optimizer_state=True)
            _set_rng_state(saved["rng"])
            logger.info("%s: resuming after experience %d", run_dir, len(steps) - 1)
        if name in _OFFLINE:
            steps = _run_offline(strategy, scenario, benchmark, early_stopping)
        for index in range(len(steps), benchmark.n_experiences):
            if config.max_experiences is not None and index >= config.max_experiences:
                break
            steps.append(_run_experience(strategy, scenario, index, benchmark, early_stopping, config))
            if codec is not None:
                _save_state(state_path, strategy, _current_model(strategy, model), name, steps)
    finally:
        loggers.close()
    result = summarize_run(name, benchmark, steps, memory_size, offline=name in _OFFLINE)
    if result["complete"]:
        # The final model, loadable with cfer.models.load_checkpoint (and so by cfer gradcam).
        save_checkpoint(_current_model(strategy, model), run_dir / "model.safetensors",
                        {"classes": list(benchmark.classes), "phase": "incremental", "strategy": name})
        write_json(result_path, result)
        state_path.unlink(missing_ok=True)
    return result


def _run_experience(
    strategy: SupervisedTemplate,
    scenario: Any,
    index: int,
    benchmark: IncrementalBenchmark,
    early_stopping: ValidationEarlyStoppingPlugin | None,
    config: IncrementalConfig,
) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    experience = scenario.train_stream[index]
    if index == 0:
        # the basic phase trained these classes; zero epochs only lets the strategy register them
        _prime_icarl(strategy, experience)
        strategy.train_epochs = 0
    try:
        strategy.train(experience)
    finally:
        strategy.train_epochs = config.epochs
    train_seconds = time.perf_counter() - wall
    results = strategy.eval(scenario.test_stream[: index + 1])
    step = read_step_metrics(results, index + 1)
    epochs = 0 if index == 0 else strategy.clock.train_exp_epochs
    best_epoch = early_stopping.best_epoch if early_stopping is not None and index > 0 else None
    step.update(
        step=index,
        new_classes=list(benchmark.classes_of(index)),
        num_classes=benchmark.num_basic + index,
        epochs=int(epochs),
        best_epoch=None if best_epoch is None or best_epoch < 0 else int(best_epoch),
        valid_history=list(early_stopping.history) if early_stopping is not None and index > 0 else [],
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
    strategy: SupervisedTemplate,
    scenario: Any,
    benchmark: IncrementalBenchmark,
    early_stopping: ValidationEarlyStoppingPlugin | None,
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
    best_epoch = early_stopping.best_epoch if early_stopping is not None else None
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
                "best_epoch": None if not last or best_epoch is None or best_epoch < 0 else int(best_epoch),
                "valid_history": list(early_stopping.history) if early_stopping is not None and last else [],
                "train_seconds": train_seconds if last else 0.0,
                "wall_seconds": wall_seconds if last else 0.0,
                "cpu_seconds": cpu_seconds if last else 0.0,
            }
        )
    logger.info("joint training on %d classes: final accuracy %.3f, %.1f s", len(benchmark.classes),
                steps[-1]["accuracy"], train_seconds)
    return steps


def _current_model(strategy: SupervisedTemplate, model: torch.nn.Module) -> torch.nn.Module:
    """The model being trained: GDumb replaces ``strategy.model`` by a fresh copy at every experience,
    while iCaRL wraps the original's backbone and head (``strategy.model`` is then a wrapper)."""
    return strategy.model if isinstance(strategy.model, type(model)) else model


def _prime_icarl(strategy: SupervisedTemplate, experience: Any) -> None:
    """iCaRL measures its feature size on its first training batch, which zero epochs never run."""
    from avalanche.training.supervised.icarl import _ICaRLPlugin

    for plugin in strategy.plugins:
        if isinstance(plugin, _ICaRLPlugin) and plugin.embedding_size is None:
            image = experience.dataset.eval()[0][0].unsqueeze(0).to(strategy.device)
            model = strategy.model
            was_training = model.training
            model.eval()
            with torch.no_grad():
                features = model.feature_extractor(image)
                plugin.input_size = image.shape[1:]
                plugin.output_size = model.train_classifier(features).shape[1]
                plugin.embedding_size = features.shape[1]
            model.train(was_training)


class _OptimizerStateLoader(SupervisedPlugin):
    """Puts a saved optimizer state back once Avalanche has (re)built the optimizer's parameter list.

    Avalanche resets the optimizer the first time a strategy trains, so a resumed run loads the
    state at ``before_training_exp``, after that reset and after the head has grown. The state is
    matched to parameters by name (see :func:`_optimizer_state`), because the positions can differ:
    a strategy built around a model that grows after its optimizer was made (the registry's
    iCaRL) keeps the replaced tensors in the optimizer. Parameters that grew since the save restart
    from an empty state, as Avalanche's ``update_optimizer`` does in an uninterrupted run.
    """

    def __init__(self, saved: dict[str, Any] | None) -> None:
        super().__init__()
        self.saved = saved

    def before_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        if self.saved is None:
            return
        optimizer = strategy.optimizer
        saved_state = self.saved["state_dict"]
        saved_index = {
            name: index
            for group_names, group in zip(self.saved["param_names"], saved_state["param_groups"])
            for name, index in zip(group_names, group["params"])
            if name
        }
        names = {id(p): name for name, p in strategy.optimized_param_id.items()}
        state: dict[int, Any] = {}
        groups = []
        position = 0
        for group, saved_group in zip(optimizer.param_groups, saved_state["param_groups"]):
            indices = []
            for parameter in group["params"]:
                index = saved_index.get(names.get(id(parameter), ""))
                if index is not None and index in saved_state["state"]:
                    state[position] = saved_state["state"][index]
                indices.append(position)
                position += 1
            groups.append({**saved_group, "params": indices})
        optimizer.load_state_dict({"state": state, "param_groups": groups})
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                slots = optimizer.state.get(parameter, {})
                if any(torch.is_tensor(v) and v.dim() > 0 and v.shape != parameter.shape for v in slots.values()):
                    optimizer.state[parameter] = {}
        self.saved = None


def _optimizer_state(strategy: SupervisedTemplate) -> dict[str, Any]:
    """The optimizer's state dict and the parameter name at each position (None: not in the model)."""
    names = {id(p): name for name, p in (strategy.optimized_param_id or {}).items()}
    return {
        "state_dict": strategy.optimizer.state_dict(),
        "param_names": [[names.get(id(p)) for p in group["params"]] for group in strategy.optimizer.param_groups],
    }


def _save_state(
    path: Path, strategy: SupervisedTemplate, model: torch.nn.Module, name: str, steps: list[dict[str, Any]]
) -> None:
    codec = get_strategy_state(name)
    clock = strategy.clock
    state = {
        "format": STATE_FORMAT,
        "strategy_name": name,
        "num_classes": model.num_classes,
        "model": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "optimizer": _optimizer_state(strategy),
        "clock": {
            key: int(getattr(clock, key))
            for key in (
                "train_iterations",
                "train_exp_counter",
                "train_exp_epochs",
                "train_exp_iterations",
                "train_epoch_iterations",
                "total_iterations",
            )
        },
        "strategy": codec.capture(strategy) if codec is not None else {},
        "rng": _rng_state(),
        "steps": steps,
    }
    atomic_write(path, lambda file: torch.save(state, file))


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _rng_state() -> dict[str, Any]:
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    saved = state["numpy"]
    np.random.set_state(
        (saved["kind"], saved["keys"].numpy().astype(np.uint32), saved["position"], saved["has_gauss"], saved["gauss"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _subjects(
    config: IncrementalConfig, dataset: Any, basic_names: tuple[str, ...], basic_dir: Path, fold: int
) -> dict[str, list[int]]:
    """The basic phase's subjects of ``fold``, as it recorded them, else recomputed the same way."""
    recorded = basic_dir / f"fold_{fold}" / "metrics.json"
    if recorded.exists():
        subjects = read_json(recorded).get("subjects")
        if subjects is not None:
            return {"train": subjects["train"], "valid": subjects["val"], "test": subjects["test"]}
    basic = config.basic
    return subject_split(dataset, basic_names, fold, basic.folds, basic.val_fraction, basic.seed)


def _check_resumable(config: IncrementalConfig, out_dir: Path) -> None:
    saved = out_dir / "config.yaml"
    if not saved.exists():
        return
    previous = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
    current = config_to_dict(config)
    differing = sorted(
        key
        for key in set(previous) | set(current)
        if key not in _RESUMABLE_CHANGES and previous.get(key) != current.get(key)
    )
    if differing:
        raise ValueError(
            f"{out_dir} holds a run with different settings ({', '.join(differing)}); "
            f"use another out_dir, or delete {out_dir} to start over"
        )
