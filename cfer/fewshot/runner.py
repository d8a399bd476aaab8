"""``cfer fewshot``: the paper's protocol, FSCIL sessions and episodic evaluation, end to end.

:func:`run_fewshot` reuses a finished basic-phase run (``basic_run``) or trains one fold of it into
``OUT/basic``, then splits the subjects of the few-shot images in three:

* **shot pool**: the basic model's training subjects. Their compound images were never shown to
  it, so every protocol draws its K shots there, as the reference does; their basic images are the
  base session's training data.
* **held out**: every other subject: the basic fold's test subjects and any subject beyond the
  basic run's (the synthetic dataset renders subject ``s`` identically whatever the subject count).
* **validation**: the basic fold's validation subjects, which chose the basic model. They are scored
  only with ``evaluate_on: validation``, to choose settings without looking at the held-out subjects.

Every protocol runs on backbone features computed once per image, kept in ``features.pt`` (keyed by
the basic model and the data settings), and each finished (protocol, method) part is kept in
``parts/``: a rerun with the same settings reuses both. Layout of ``out_dir``::

    config.yaml              the resolved settings
    basic/                   the basic phase, when no basic_run is given (resumes if interrupted)
    features.pt, parts/      cached features and finished parts (resume)
    results.json             everything below, plus every single run
    results.md               Markdown tables
    accuracy_vs_session.png  FSCIL: accuracy against session, one line per method (and the references)
    accuracy_vs_shots.png    the paper protocol per method, and the episodic accuracy, against K
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cfer.config import config_to_dict, load_config, save_config
from cfer.core.layers import MultiLayerFeatures
from cfer.data.dataset import FaceExpressionDataset
from cfer.data.reading import write_skipped
from cfer.data.sources import load_dataset
from cfer.data.splits import TEST, TRAIN, VAL, assign_splits, split_policy
from cfer.fewshot.config import FewShotConfig
from cfer.fewshot.episodic import EpisodicConfig, class_pool, evaluate_episodes
from cfer.fewshot.features import FeatureSet, extract_features
from cfer.fewshot.fscil import reference_results, run_fscil_method
from cfer.fewshot.methods import BaseSession, check_method_options, method_config
from cfer.fewshot.protocol import run_paper_protocol
from cfer.fewshot.reports import write_fewshot_reports
from cfer.fewshot.threads import one_thread
from cfer.io import atomic_write, load_torch_file, read_json, write_json
from cfer.models.classifier import ExpressionClassifier, create_model
from cfer.taxonomy import BASIC, COMPOUND
from cfer.training.basic import (
    BasicPhaseConfig,
    basic_classes,
    load_basic_model,
    run_basic_phase,
)
from cfer.training.loop import resolve_device

__all__ = [
    "FewShotSession",
    "fewshot_parts",
    "open_fewshot",
    "part_path",
    "run_fewshot",
    "run_fewshot_part",
    "split_subjects",
]

logger = logging.getLogger(__name__)


def split_subjects(basic_run: str | Path, subject_ids: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Shot-pool and held-out masks from the subjects a basic-phase run trained and validated on.

    Args:
        basic_run: A finished basic-phase run directory.
        subject_ids: Subject of each few-shot image, shape (N,).

    Returns:
        ``(pool, held_out)`` boolean masks of shape (N,): pool = the selected fold's training
        subjects; held out = subjects neither trained nor validated on.

    Raises:
        FileNotFoundError: If the run's metrics are missing.
    """
    pool, _, held_out = _subject_masks(basic_run, subject_ids)
    return pool, held_out


def _subject_masks(basic_run: str | Path, subject_ids: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    run = Path(basic_run)
    summary = read_json(run / "metrics.json")
    fold = read_json(run / f"fold_{summary['best_fold']}" / "metrics.json")
    subjects = subject_ids.numpy()
    train, val = np.asarray(fold["subjects"]["train"]), np.asarray(fold["subjects"]["val"])
    pool, validation = np.isin(subjects, train), np.isin(subjects, val)
    return pool, validation, ~pool & ~validation


@dataclasses.dataclass(frozen=True)
class _Data:
    """The features of every few-shot image and where each image belongs."""

    backbones: dict[str, FeatureSet]  # 'basic' (the basic-phase backbone) and, for the episodic run, the ImageNet one
    pool: np.ndarray  # (N,) shot pool: the basic model's training subjects
    scored: np.ndarray  # (N,) the images scored: held-out or validation subjects (evaluate_on)
    compounds: tuple[str, ...]  # compound classes present
    imagenet_name: str  # what the other backbone's weights are: "imagenet", or "untrained"
    subjects_known: bool  # False: every image counts as its own subject (no subject ids in the source)
    key: str  # fingerprint of the basic model and the data settings


def run_fewshot(config: FewShotConfig, out_dir: str | Path) -> dict[str, Any]:
    """Runs the enabled protocols and writes their reports.

    Args:
        config: The settings.
        out_dir: Run directory (created); a rerun reuses its cached features and finished parts.

    Returns:
        The summary also written to ``out_dir/results.json``: ``config``, ``paper`` (see
        :func:`cfer.fewshot.protocol.run_paper_protocol`), ``fscil`` (per method, see
        :func:`cfer.fewshot.fscil.run_fscil_method`, and the ``references``), ``episodic`` (per backbone,
        classifier and setting: mean, ci95, ...), subject counts, ``wall_seconds`` and ``out_dir``.

    Raises:
        ValueError: If the few-shot data does not match the basic run's, a method or option is unknown,
            or a protocol cannot run.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    session = open_fewshot(config, out_dir)
    teacher, teacher_classes, basic_dir, data = session.teacher, session.teacher_classes, session.basic_dir, session.data
    subjects, scored = data.backbones["basic"].subject_ids.numpy(), config.evaluate_on.replace("-", "_")
    summary: dict[str, Any] = {
        "config": config_to_dict(config),
        "basic_run": str(basic_dir),
        "basic_classes": list(teacher_classes),
        "evaluated_on": config.evaluate_on,
        "subjects": {"shot_pool": len(np.unique(subjects[data.pool])), scored: len(np.unique(subjects[data.scored]))},
        "images": {"shot_pool": int(data.pool.sum()), scored: int(data.scored.sum())},
        "subjects_known": data.subjects_known,  # False: the subject counts above count images
    }
    if config.paper.enabled:
        summary["paper"] = _paper(config, teacher, teacher_classes, data, basic_dir, out_dir)
    if config.fscil.enabled:
        summary["fscil"] = _fscil(config, teacher, teacher_classes, data, out_dir)
    if config.episodic.enabled:
        summary["episodic"] = _episodic_part(config, data, out_dir)
    summary["wall_seconds"] = time.perf_counter() - start
    summary["out_dir"] = str(out_dir)
    write_fewshot_reports(summary, out_dir)
    return summary


@dataclasses.dataclass(frozen=True)
class FewShotSession:
    """What every part of a few-shot run shares, built once by :func:`open_fewshot`."""

    teacher: ExpressionClassifier  # the basic-phase model, on the CPU
    teacher_classes: tuple[str, ...]  # its classes, in output order
    basic_dir: Path  # its run
    data: _Data  # the features of every image and where each belongs


def open_fewshot(config: FewShotConfig, out_dir: str | Path) -> FewShotSession:
    """Checks the settings, trains (or reuses) the basic phase and computes (or reads) the features.

    Raises:
        ValueError: If a method or option is unknown, the protocols cannot run together, or the
            few-shot data does not match the basic run's.
    """
    check_method_options(config.methods, config.method_options)
    if config.paper.enabled and config.paper.trainable_blocks > 0 and list(config.methods) != ["paper"]:
        raise ValueError("paper.trainable_blocks > 0 trains the 'paper' method on images, which no other method "
                         f"does; set methods: [paper] (got {list(config.methods)})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, out_dir / "config.yaml")
    device = resolve_device(config.device)
    teacher, teacher_classes, basic_dir = _basic_model(config, out_dir, device)
    data = _data(config, basic_dir, teacher, device, out_dir)
    return FewShotSession(teacher.cpu(), teacher_classes, basic_dir, data)


def fewshot_parts(config: FewShotConfig) -> list[tuple[str, str | None]]:
    """The parts a run computes, each kept in ``parts/``: (protocol, method), the episodic one without a method."""
    parts: list[tuple[str, str | None]] = []
    for protocol in ("paper", "fscil"):
        if getattr(config, protocol).enabled:
            parts += [(protocol, method) for method in config.methods]
    return parts + ([("episodic", None)] if config.episodic.enabled else [])


def part_path(out_dir: str | Path, protocol: str, method: str | None) -> Path:
    """Where a finished part is kept."""
    parts = Path(out_dir) / "parts"
    return parts / f"{protocol}.json" if method is None else parts / protocol / f"{method}.json"


def run_fewshot_part(config: FewShotConfig, session: FewShotSession, out_dir: str | Path, protocol: str,
                     method: str | None) -> None:
    """Computes one part of :func:`fewshot_parts` into ``parts/`` (or finds it there), as a whole run would.

    The reports are left to :func:`run_fewshot`, which then reuses every part.
    """
    alone = dataclasses.replace(config, methods=[method] if method is not None else config.methods)
    out_dir = Path(out_dir)
    if protocol == "paper":
        _paper(alone, session.teacher, session.teacher_classes, session.data, session.basic_dir, out_dir)
    elif protocol == "fscil":
        _fscil_methods(alone, session.teacher, session.teacher_classes, session.data, out_dir)
    else:
        _episodic_part(config, session.data, out_dir)


def _episodic_part(config: FewShotConfig, data: _Data, out_dir: Path) -> dict[str, Any]:
    return _part(part_path(out_dir, "episodic", None), _settings(config, data, "episodic"),
                 lambda: _episodic(config.episodic, data, config.seed))


def _basic_model(config: FewShotConfig, out_dir: Path,
                 device: torch.device) -> tuple[ExpressionClassifier, tuple[str, ...], Path]:
    """The basic-phase model (trained into ``OUT/basic`` when no run is given), its classes and its run."""
    basic_dir = Path(config.basic_run) if config.basic_run is not None else out_dir / "basic"
    if config.basic_run is None:
        # one fold is enough to get a basic model and its subject split
        basic_config = config.basic if config.basic.fold is not None else dataclasses.replace(config.basic, fold=0)
        run_basic_phase(basic_config, basic_dir)
    _check_same_images(load_config(BasicPhaseConfig, basic_dir / "config.yaml"), config)
    teacher, metadata = load_basic_model(basic_dir)
    return teacher.to(device).eval(), tuple(metadata["classes"]), basic_dir


def _read_cache(cache: Path) -> dict[str, Any]:
    """The stored features, or nothing (they are computed again) when the file is damaged."""
    try:
        stored = load_torch_file(cache, "it is computed again")
    except ValueError as error:
        logger.warning("%s", error)
        return {}
    return stored if isinstance(stored, dict) else {}


def _data(config: FewShotConfig, basic_dir: Path, teacher: ExpressionClassifier, device: torch.device,
          out_dir: Path) -> _Data:
    """Features of every image by each backbone needed, from ``features.pt`` when it matches."""
    wanted = ["basic"] + (["layers"] if any(_reads(config, method) == "layers" for method in config.methods) else []) \
        + (["imagenet"] if config.episodic.enabled else [])
    key = _fingerprint(config, basic_dir)
    cache = out_dir / "features.pt"
    if config.cache_features and cache.is_file():
        stored = _read_cache(cache)
        if stored.get("key") == key and all(name in stored.get("backbones", ()) for name in wanted):
            logger.info("few-shot features read from %s", cache)
            return _from_stored(stored, config.evaluate_on)
    stored = _compute_features(config, basic_dir, teacher, device, out_dir, wanted)
    stored["key"] = key
    if config.cache_features:
        atomic_write(cache, lambda file: torch.save(stored, file))
    return _from_stored(stored, config.evaluate_on)


def _compute_features(config: FewShotConfig, basic_dir: Path, teacher: ExpressionClassifier, device: torch.device,
                      out_dir: Path, wanted: list[str]) -> dict[str, Any]:
    basic_config = load_config(BasicPhaseConfig, basic_dir / "config.yaml")
    dataset = load_dataset(config.data, BASIC + COMPOUND)
    write_skipped(dataset.skipped, out_dir)
    counts = dataset.class_counts()
    compounds = tuple(name for name in COMPOUND if counts[name] > 0)  # RAF-DB has 11 of the 15
    dataset = dataset.select_classes(BASIC + compounds)
    pool, validation, held_out = _split_masks(basic_dir, basic_config, dataset)
    logger.info("few-shot data: %d images; %d shot-pool and %d held-out subjects", len(dataset),
                len(np.unique(dataset.subject_ids.numpy()[pool])), len(np.unique(dataset.subject_ids.numpy()[held_out])))
    models = {"basic": teacher}
    if "imagenet" in wanted:
        models["imagenet"] = create_model(teacher.config, num_classes=teacher.num_classes).to(device).eval()
    backbones = {name: dataclasses.asdict(_features(model, dataset, device)) for name, model in models.items()}
    if "layers" in wanted:
        fit = pool & np.isin(dataset.targets.numpy(), [dataset.classes.index(c) for c in BASIC if c in dataset.classes])
        backbones["layers"] = dataclasses.asdict(_layer_features(teacher, dataset, device, fit))
    return {"backbones": backbones, "pool": torch.from_numpy(pool), "validation": torch.from_numpy(validation),
            "held_out": torch.from_numpy(held_out), "compounds": list(compounds),
            "imagenet_name": _imagenet_name(teacher), "subjects_known": dataset.subjects_known}


def _from_stored(stored: dict[str, Any], evaluate_on: str) -> _Data:
    backbones = {name: FeatureSet(**{**fields, "classes": tuple(fields["classes"]),
                                     "au_ids": tuple(fields.get("au_ids", ()))})
                 for name, fields in stored["backbones"].items()}
    scored = stored["validation"] if evaluate_on == "validation" else stored["held_out"]
    return _Data(backbones, stored["pool"].numpy(), scored.numpy(), tuple(stored["compounds"]),
                 stored["imagenet_name"], stored["subjects_known"], stored["key"])


def _fingerprint(config: FewShotConfig, basic_dir: Path) -> str:
    """Changes whenever the images, their split or the basic model could (not with the basic run's timings)."""
    best_fold = read_json(basic_dir / "metrics.json")["best_fold"]
    facts = {"format": 2,  # 2: the feature sets carry the images' AU intensities
             "data": config_to_dict(config.data), "basic": config_to_dict(load_config(BasicPhaseConfig, basic_dir / "config.yaml")),
             "split": read_json(basic_dir / f"fold_{best_fold}" / "metrics.json").get("subjects"), "fold": best_fold}
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode())
    digest.update((basic_dir / "model.safetensors").read_bytes())
    return digest.hexdigest()


def _split_masks(basic_dir: Path, basic: BasicPhaseConfig,
                 dataset: FaceExpressionDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks of the shot pool, the validation and the held-out images: by the basic run's recorded subjects
    when the data is split subject-wise, else by the same split as the basic run's (an official train/test split)."""
    policy = split_policy(dataset, basic.data.split)
    if policy == "subject":
        return _subject_masks(basic_dir, dataset.subject_ids)
    fold = int(read_json(basic_dir / "metrics.json")["best_fold"])
    codes = assign_splits(dataset, fold, basic.folds, basic.val_fraction, basic.seed, basic.data.split,
                          basic_classes=basic_classes(basic))
    return codes == TRAIN, codes == VAL, codes == TEST


def _check_same_images(basic: BasicPhaseConfig, config: FewShotConfig) -> None:
    """Subject ids only mean the same people when both runs read the same source the same way."""
    differing = [key for key in ("source", "root", "seed", "size", "samples_per_category", "variant", "split")
                 if getattr(basic.data, key) != getattr(config.data, key)]
    if differing:
        raise ValueError(
            f"the few-shot data differs from the basic run's in {differing}; set data.<key> to the basic "
            f"run's values ({ {k: getattr(basic.data, k) for k in differing} }) so that subject ids match"
        )


def _settings(config: FewShotConfig, data: _Data, part: str, method: str | None = None) -> dict[str, Any]:
    """What a finished part depends on; a part is reused only when all of it is equal."""
    section = {"paper": config.paper, "fscil": config.fscil, "episodic": config.episodic}[part]
    return {"features": data.key, "evaluate_on": config.evaluate_on, "seed": config.seed, "method": method,
            # the resolved settings, defaults included: a changed default is a changed part
            "method_options": config_to_dict(method_config(method, config.method_options.get(method))) if method else {},
            part: config_to_dict(section)}


def _part(path: Path, settings: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()``, or its result kept at ``path`` by an earlier run with the same settings."""
    if path.is_file():
        stored = read_json(path)
        if stored.get("settings") == json.loads(json.dumps(settings)):
            logger.info("reusing %s", path)
            return stored["result"]
    result = json.loads(json.dumps(compute()))  # as a rerun will read it back
    write_json(path, {"settings": settings, "result": result})
    return result


def _paper(config: FewShotConfig, teacher: ExpressionClassifier, teacher_classes: tuple[str, ...], data: _Data,
           basic_dir: Path, out_dir: Path) -> dict[str, Any]:
    """The paper's protocol, one part per method, merged: every method on the pooled features, on which it also
    scores the basic model's own head."""
    if config.paper.trainable_blocks == 0:
        pool, scored = data.backbones["basic"].subset(data.pool), data.backbones["basic"].subset(data.scored)
    else:  # the paper's method trains its last blocks on the images themselves
        dataset = load_dataset(config.data, BASIC + COMPOUND).select_classes(BASIC + data.compounds)
        pool, scored = dataset.subset(data.pool), dataset.subset(data.scored)
    merged: dict[str, Any] = {}
    for method in config.methods:
        result = _part(part_path(out_dir, "paper", method), _settings(config, data, "paper", method),
                       lambda method=method: run_paper_protocol(teacher, teacher_classes, pool, scored, config.paper,
                                                                data.compounds, seed=config.seed, methods=[method],
                                                                method_options=config.method_options,
                                                                progress=config.progress))
        merged = {**result, "methods": {**merged.get("methods", {}), **result["methods"]}}
    merged["seconds"] = sum(entry["seconds"] for entry in merged["methods"].values())
    return merged


def _fscil(config: FewShotConfig, teacher: ExpressionClassifier, teacher_classes: tuple[str, ...], data: _Data,
           out_dir: Path) -> dict[str, Any]:
    """FSCIL sessions, one part per method, and the full-data continual references."""
    methods = _fscil_methods(config, teacher, teacher_classes, data, out_dir)
    subjects = np.unique(data.backbones["basic"].subset(data.scored).subject_ids.numpy()).tolist()
    return {"n_way": config.fscil.n_way, "shots": [str(k) for k in config.fscil.shots],
            "orders": config.fscil.orders, "seeds": config.fscil.seeds, "num_base": len(teacher_classes),
            "methods": methods, "references": reference_results(config.fscil.reference_runs, subjects)}


def _fscil_methods(config: FewShotConfig, teacher: ExpressionClassifier, teacher_classes: tuple[str, ...],
                   data: _Data, out_dir: Path) -> dict[str, Any]:
    """Each method's FSCIL sessions, one part per method, on the features it reads."""
    def run(method: str) -> dict[str, Any]:
        features = data.backbones["layers" if _reads(config, method) == "layers" else "basic"]
        pool, scored = features.subset(data.pool), features.subset(data.scored)
        return run_fscil_method(method, _base_session(teacher, teacher_classes, pool), pool, scored, teacher_classes,
                                data.compounds, config.fscil, config.method_options.get(method), seed=config.seed,
                                progress=config.progress)

    return {method: _part(part_path(out_dir, "fscil", method), _settings(config, data, "fscil", method),
                          lambda method=method: run(method))
            for method in config.methods}


def _base_session(teacher: ExpressionClassifier, teacher_classes: tuple[str, ...], pool: FeatureSet) -> BaseSession:
    """The base session: the teacher's head and the pool's basic images (output ``j`` is ``teacher_classes[j]``)."""
    basic_ids = torch.tensor([pool.classes.index(c) for c in teacher_classes])
    output_of = {int(c): j for j, c in enumerate(basic_ids)}
    base_pool = pool.subset(torch.isin(pool.targets, basic_ids))
    return BaseSession(teacher.head, base_pool.features,
                       torch.tensor([output_of[int(t)] for t in base_pool.targets], dtype=torch.int64),
                       classes=tuple(teacher_classes), au_intensities=base_pool.au_intensities, au_ids=base_pool.au_ids)


def _reads(config: FewShotConfig, method: str) -> str:
    """The features a method reads: its config's ``features`` ('pooled' when it has none)."""
    return getattr(method_config(method, config.method_options.get(method)), "features", "pooled")


def _imagenet_name(model: ExpressionClassifier) -> str:
    config = model.config
    return "imagenet" if config is not None and (config.pretrained == "imagenet" or config.weights) else "untrained"


def _features(model: ExpressionClassifier, dataset: FaceExpressionDataset, device: torch.device) -> FeatureSet:
    data_config = model.data_config
    return extract_features(model.features, dataset, data_config["mean"], data_config["std"], device=device)


def _layer_features(model: ExpressionClassifier, dataset: FaceExpressionDataset, device: torch.device,
                    fit: np.ndarray) -> FeatureSet:
    """The basic backbone's multi-layer features (:mod:`cfer.core.layers`), standardised on the rows ``fit``."""
    data_config = model.data_config
    layers = MultiLayerFeatures(model.backbone).to(device).eval()
    raw = extract_features(layers.raw, dataset, data_config["mean"], data_config["std"], device=device)
    layers.fit(raw.features[torch.from_numpy(fit)].to(device))
    return dataclasses.replace(raw, features=layers.standardise(raw.features.to(device)).cpu())


def _episodic(config: EpisodicConfig, data: _Data, seed: int) -> dict[str, Any]:
    backbones = {data.imagenet_name: data.backbones["imagenet"].subset(data.scored),
                 "basic": data.backbones["basic"].subset(data.scored)}
    settings = {f"{config.n_way}-way {k}-shot": k for k in config.shots}
    options = {"linear": {"steps": config.linear_steps, "lr": config.linear_lr}}
    results: dict[str, dict[str, dict[str, Any]]] = {}
    classes_used: list[str] = []
    with one_thread():  # torch's many small ops per episode are faster on one thread
        for backbone, features in backbones.items():
            pool = class_pool(config.class_pool, features.classes)
            results[backbone] = {}
            for classifier in config.classifiers:
                results[backbone][classifier] = {}
                for name, shots in settings.items():
                    result = evaluate_episodes(
                        features, config.n_way, shots, config.n_query, config.episodes, classifier=classifier,
                        classifier_options=options.get(classifier), classes=pool,
                        subject_disjoint=config.subject_disjoint, on_too_few=config.on_too_few, seed=seed + config.seed,
                    )
                    classes_used = result.pop("classes")
                    results[backbone][classifier][name] = result
                    logger.info("episodic %s / %s %s: %.3f ± %.3f", backbone, classifier, name, result["mean"],
                                result["ci95"])
    gain = {classifier: {s: results["basic"][classifier][s]["mean"] - results[data.imagenet_name][classifier][s]["mean"]
                         for s in settings} for classifier in config.classifiers}
    # the basic phase restores its best epoch; when that is a head-stage epoch the backbone is
    # still the ImageNet one, and the comparison says nothing about learning basic expressions
    identical = torch.allclose(data.backbones["imagenet"].features, data.backbones["basic"].features)
    if identical:
        logger.warning("the basic-phase backbone computes the same features as the ImageNet one (its "
                       "fine-tuning stage never beat the head stage on validation loss); the episodic "
                       "comparison of the two is void")
    return {
        "settings": list(settings), "shots": list(settings.values()), "n_way": config.n_way,
        "n_query": config.n_query, "episodes": config.episodes, "class_pool": config.class_pool,
        "classes": classes_used, "subject_disjoint": config.subject_disjoint, "results": results,
        "basic_minus_imagenet": gain, "backbones_identical": identical,
    }
