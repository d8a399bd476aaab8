"""``cfer fewshot``: the paper's few-shot protocol and episodic evaluation, end to end.

:func:`run_fewshot` reuses a finished basic-phase run (``basic_run``) or trains one fold of it into
``OUT/basic``, then splits the subjects of the few-shot images in two:

* **shot pool**: the basic model's training subjects. Their compound images were never shown to
  it, so the paper's protocol draws its K shots there, as the reference does.
* **held out**: every other subject: the basic fold's test subjects and any subject beyond the
  basic run's (the synthetic dataset renders subject ``s`` identically whatever the subject count).
  The basic fold's validation subjects, which chose the basic model, are in neither.

Both protocols score on held-out subjects only. Layout of ``out_dir``::

    config.yaml            the resolved settings
    basic/                 the basic phase, when no basic_run is given (resumes if interrupted)
    results.json           everything below, plus every single run of the paper protocol
    results.md             Markdown tables
    accuracy_vs_shots.png  accuracy against K for both protocols
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cfer.config import config_to_dict, load_config, save_config
from cfer.data.dataset import FaceExpressionDataset
from cfer.data.reading import write_skipped
from cfer.data.sources import load_dataset
from cfer.data.splits import TEST, TRAIN, assign_splits, split_policy
from cfer.fewshot.config import FewShotConfig
from cfer.fewshot.episodic import EpisodicConfig, class_pool, evaluate_episodes
from cfer.fewshot.features import FeatureSet, extract_features
from cfer.fewshot.protocol import run_paper_protocol
from cfer.fewshot.reports import write_fewshot_reports
from cfer.io import read_json
from cfer.models.classifier import ExpressionClassifier, create_model
from cfer.taxonomy import BASIC, COMPOUND
from cfer.training.basic import (
    BasicPhaseConfig,
    basic_classes,
    load_basic_model,
    run_basic_phase,
)
from cfer.training.loop import resolve_device

__all__ = ["run_fewshot", "split_subjects"]

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
    run = Path(basic_run)
    summary = read_json(run / "metrics.json")
    fold = read_json(run / f"fold_{summary['best_fold']}" / "metrics.json")
    subjects = subject_ids.numpy()
    train, val = np.asarray(fold["subjects"]["train"]), np.asarray(fold["subjects"]["val"])
    pool = np.isin(subjects, train)
    return pool, ~pool & ~np.isin(subjects, val)


def run_fewshot(config: FewShotConfig, out_dir: str | Path) -> dict[str, Any]:
    """Runs the enabled protocols and writes their reports.

    Args:
        config: The settings.
        out_dir: Run directory (created).

    Returns:
        The summary also written to ``out_dir/results.json``: ``config``, ``paper`` (see
        :func:`cfer.fewshot.protocol.run_paper_protocol`, without ``runs`` only in the
        Markdown), ``episodic`` (per backbone, classifier and setting: mean, ci95, ...), subject
        counts, ``wall_seconds`` and ``out_dir``.

    Raises:
        ValueError: If the few-shot data does not match the basic run's, or a protocol cannot run.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, out_dir / "config.yaml")
    device = resolve_device(config.device)

    basic_dir = Path(config.basic_run) if config.basic_run is not None else out_dir / "basic"
    if config.basic_run is None:
        # one fold is enough to get a basic model and its subject split
        basic_config = config.basic if config.basic.fold is not None else dataclasses.replace(config.basic, fold=0)
        run_basic_phase(basic_config, basic_dir)
    basic_config = load_config(BasicPhaseConfig, basic_dir / "config.yaml")
    _check_same_images(basic_config, config)
    teacher, metadata = load_basic_model(basic_dir)
    teacher = teacher.to(device).eval()
    teacher_classes = tuple(metadata["classes"])

    dataset = load_dataset(config.data, BASIC + COMPOUND)
    write_skipped(dataset.skipped, out_dir)
    counts = dataset.class_counts()
    compounds = tuple(name for name in COMPOUND if counts[name] > 0)  # RAF-DB has 11 of the 15
    dataset = dataset.select_classes(BASIC + compounds)
    pool, held_out = _shot_pool_and_held_out(basic_dir, basic_config, dataset)
    logger.info("few-shot data: %d images; %d shot-pool and %d held-out subjects", len(dataset),
                len(np.unique(dataset.subject_ids.numpy()[pool])), len(np.unique(dataset.subject_ids.numpy()[held_out])))
    basic_features = _features(teacher, dataset, device)

    summary: dict[str, Any] = {
        "config": config_to_dict(config),
        "basic_run": str(basic_dir),
        "basic_classes": list(teacher_classes),
        "subjects": {"shot_pool": len(np.unique(dataset.subject_ids.numpy()[pool])),
                     "held_out": len(np.unique(dataset.subject_ids.numpy()[held_out]))},
        "images": {"shot_pool": int(pool.sum()), "held_out": int(held_out.sum())},
        "subjects_known": dataset.subjects_known,  # False: the subject counts above count images
    }
    if config.paper.enabled:
        if config.paper.trainable_blocks == 0:
            train_pool, evaluation = basic_features.subset(pool), basic_features.subset(held_out)
        else:
            train_pool, evaluation = dataset.subset(pool), dataset.subset(held_out)
        summary["paper"] = run_paper_protocol(teacher.cpu(), teacher_classes, train_pool, evaluation, config.paper,
                                              compounds, seed=config.seed)
    if config.episodic.enabled:
        imagenet = create_model(teacher.config, num_classes=len(teacher_classes)).to(device).eval()
        backbones = {_imagenet_name(teacher): _features(imagenet, dataset, device), "basic": basic_features}
        summary["episodic"] = _episodic(config.episodic, {k: v.subset(held_out) for k, v in backbones.items()},
                                        config.seed)
        # the basic phase restores its best epoch; when that is a head-stage epoch the backbone is
        # still the ImageNet one, and the comparison says nothing about learning basic expressions
        identical = torch.allclose(*(b.features for b in backbones.values()))
        summary["episodic"]["backbones_identical"] = identical
        if identical:
            logger.warning("the basic-phase backbone computes the same features as the ImageNet one (its "
                           "fine-tuning stage never beat the head stage on validation loss); the episodic "
                           "comparison of the two is void")
    summary["wall_seconds"] = time.perf_counter() - start
    summary["out_dir"] = str(out_dir)
    write_fewshot_reports(summary, out_dir)
    return summary


def _shot_pool_and_held_out(basic_dir: Path, basic: BasicPhaseConfig,
                            dataset: FaceExpressionDataset) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the shot pool and the held-out images: by the basic run's recorded subjects when the data
    is split subject-wise, else by the same split as the basic run's (an official train/test split)."""
    policy = split_policy(dataset, basic.data.split)
    if policy == "subject":
        return split_subjects(basic_dir, dataset.subject_ids)
    fold = int(read_json(basic_dir / "metrics.json")["best_fold"])
    codes = assign_splits(dataset, fold, basic.folds, basic.val_fraction, basic.seed, basic.data.split,
                          basic_classes=basic_classes(basic))
    return codes == TRAIN, codes == TEST


def _check_same_images(basic: BasicPhaseConfig, config: FewShotConfig) -> None:
    """Subject ids only mean the same people when both runs read the same source the same way."""
    differing = [key for key in ("source", "root", "seed", "size", "samples_per_category", "variant", "split")
                 if getattr(basic.data, key) != getattr(config.data, key)]
    if differing:
        raise ValueError(
            f"the few-shot data differs from the basic run's in {differing}; set data.<key> to the basic "
            f"run's values ({ {k: getattr(basic.data, k) for k in differing} }) so that subject ids match"
        )


def _imagenet_name(model: ExpressionClassifier) -> str:
    config = model.config
    return "imagenet" if config is not None and (config.pretrained == "imagenet" or config.weights) else "untrained"


def _features(model: ExpressionClassifier, dataset: FaceExpressionDataset, device: torch.device) -> FeatureSet:
    data_config = model.data_config
    return extract_features(model.features, dataset, data_config["mean"], data_config["std"], device=device)


def _episodic(config: EpisodicConfig, backbones: dict[str, FeatureSet], seed: int) -> dict[str, Any]:
    settings = {f"{config.n_way}-way {k}-shot": k for k in config.shots}
    options = {"linear": {"steps": config.linear_steps, "lr": config.linear_lr}}
    results: dict[str, dict[str, dict[str, Any]]] = {}
    classes_used: list[str] = []
    # torch's many small ops per episode are faster on one thread than synchronised over several
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
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
    finally:
        torch.set_num_threads(threads)
    names = list(backbones)
    gain = {classifier: {s: results["basic"][classifier][s]["mean"] - results[names[0]][classifier][s]["mean"]
                         for s in settings} for classifier in config.classifiers}
    return {
        "settings": list(settings),
        "shots": list(settings.values()),
        "n_way": config.n_way,
        "n_query": config.n_query,
        "episodes": config.episodes,
        "class_pool": config.class_pool,
        "classes": classes_used,
        "subject_disjoint": config.subject_disjoint,
        "results": results,
        "basic_minus_imagenet": gain,
    }
