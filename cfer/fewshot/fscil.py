"""Few-shot class-incremental learning (FSCIL) of the compound classes after the basic model.

The standard protocol of CEC (Zhang et al. 2021), FACT (Zhou et al. 2022) and TEEN (Wang et al. 2023),
and the setting the paper's motivation describes: a model that keeps adding compound classes from a
few samples. The **base session** is the basic classes, trained normally (the basic phase). Then come
``15 / n_way`` sessions of ``n_way`` compound classes learned from K shots each
(:class:`~cfer.fewshot.sessions.SessionSampler`), drawn from the basic model's training subjects.
After every session the model is scored on **held-out subjects'** images of every class seen
(:mod:`cfer.fewshot.metrics`). A run is one class order and one shot selection; results are
mean ± 95% CI over ``orders × seeds`` runs.

The full-data continual runs (``cfer train-incremental``) are the upper reference: the same classes,
one at a time, learned from all their training images. :func:`reference_results` reads them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
from tqdm.auto import tqdm

from cfer.fewshot.features import FeatureSet
from cfer.fewshot.methods import (
    FEWSHOT_METHODS,
    BaseSession,
    FewShotLearner,
    create_learner,
)
from cfer.fewshot.metrics import (
    SessionScores,
    harmonic_mean,
    session_scores,
    summarize_runs,
)
from cfer.fewshot.sessions import SessionSampler
from cfer.fewshot.threads import one_thread
from cfer.io import read_json

__all__ = ["FSCILConfig", "ReferenceResult", "reference_results", "run_fscil_method"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FSCILConfig:
    """N-way K-shot sessions of compound classes after the base session of the basic classes."""

    enabled: bool = True  # run the FSCIL protocol
    n_way: int = 1  # new classes per session: 1 gives 15 sessions, 3 gives 5
    shots: list[int] = field(default_factory=lambda: [5])  # K values; each is its own set of runs
    orders: int = 3  # random orders of the compound classes
    seeds: int = 3  # shot selections per order; a method runs orders x seeds times per K
    classes: list[str] | None = None  # compound classes to add; None: all of them
    # finished `cfer train-incremental` run directories, shown beside as full-data upper references
    reference_runs: list[str] = field(default_factory=list)


def run_fscil_method(
    method: str,
    base: BaseSession,
    pool: FeatureSet,
    held_out: FeatureSet,
    basic_classes: Sequence[str],
    compound_classes: Sequence[str],
    config: FSCILConfig,
    method_options: Mapping[str, Any] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Every FSCIL run of one method: for each K, ``orders x seeds`` runs of all sessions.

    Args:
        method: A name in :data:`~cfer.fewshot.methods.FEWSHOT_METHODS`.
        base: The base session (output ``j`` is ``basic_classes[j]``).
        pool: Features the shots come from (subjects never scored), with dataset class indices.
        held_out: Features of held-out subjects, same ``classes`` as ``pool``; every score is on them.
        basic_classes: Names of the base outputs.
        compound_classes: The classes added (``config.classes`` overrides).
        config: Sessions, K values, orders and seeds.
        method_options: Fields of the method's config.
        seed: Run seed.
        progress: Show a progress bar over the runs.

    Returns:
        ``{'method', 'description', 'per_shot': {K: {'summary': RunSummary, 'runs': [...]}}, 'seconds'}``;
        each run holds its ``order``, ``seed``, ``class_order`` and per-session scores.

    Raises:
        ValueError: If the feature sets differ in classes, a class is missing, or the sessions cannot be drawn.
    """
    start = time.perf_counter()
    names = tuple(held_out.classes)
    if tuple(pool.classes) != names:
        raise ValueError("pool and held_out must have the same classes")
    classes = list(config.classes) if config.classes is not None else list(compound_classes)
    missing = [c for c in [*basic_classes, *classes] if c not in names]
    if missing:
        raise ValueError(f"classes {missing} are not in the data (classes: {list(names)})")
    held_out_subjects = np.unique(held_out.subject_ids.numpy()).tolist()
    total = len(config.shots) * config.orders * config.seeds
    bar = tqdm(total=total, desc=f"fscil {method}", disable=not progress, leave=False, dynamic_ncols=True)
    with one_thread():
        per_shot = {str(shots): _runs(method, base, pool, held_out, basic_classes, classes, shots, config,
                                      method_options, seed, held_out_subjects, bar) for shots in config.shots}
    bar.close()
    return {"method": method, "description": FEWSHOT_METHODS[method].description, "per_shot": per_shot,
            "seconds": time.perf_counter() - start}


def _runs(method: str, base: BaseSession, pool: FeatureSet, held_out: FeatureSet, basic_classes: Sequence[str],
          classes: Sequence[str], shots: int, config: FSCILConfig, method_options: Mapping[str, Any] | None,
          seed: int, held_out_subjects: list[int], bar: tqdm) -> dict[str, Any]:
    """The ``orders x seeds`` runs of one method at one K, and their summary."""
    names = tuple(held_out.classes)
    sampler = SessionSampler(pool, [names.index(c) for c in classes], config.n_way, shots,
                             exclude_subjects=held_out_subjects, seed=seed)
    runs = []
    for order in range(config.orders):
        for shot_seed in range(config.seeds):
            learner = create_learner(method, base, method_options, seed=seed * 10007 + order * 101 + shot_seed)
            scores = _run(learner, sampler, order, shot_seed, pool, held_out, basic_classes)
            runs.append({"order": order, "seed": shot_seed,
                         "class_order": [names[c] for c in sampler.order(order)], "sessions": scores})
            bar.update()
    summary = summarize_runs([run["sessions"] for run in runs])
    logger.info("fscil %s, %d-shot: final accuracy %.3f, harmonic mean %.3f, drop %.3f", method, shots,
                summary["final_accuracy"]["mean"], summary["final_harmonic_mean"]["mean"],
                summary["performance_drop"]["mean"])
    return {"summary": summary, "runs": runs}


def _run(learner: FewShotLearner, sampler: SessionSampler, order: int, shot_seed: int, pool: FeatureSet,
         held_out: FeatureSet, basic_classes: Sequence[str]) -> list[SessionScores]:
    """One run: the base session's scores, then each session's after learning it."""
    names = tuple(held_out.classes)
    output_of = {names.index(c): j for j, c in enumerate(basic_classes)}
    scores = [_score(learner, held_out, output_of, len(basic_classes), 0)]
    for session in sampler.sessions(order, shot_seed):
        for class_id in session.classes:
            output_of[class_id] = len(output_of)
        support = torch.as_tensor(session.support)
        labels = torch.tensor([output_of[int(t)] for t in pool.targets[support]], dtype=torch.int64)
        learner.learn(pool.features[support], labels, names=[names[c] for c in session.classes])
        scores.append(_score(learner, held_out, output_of, len(basic_classes), session.index))
    return scores


def _score(learner: FewShotLearner, held_out: FeatureSet, output_of: dict[int, int], num_base: int,
           session: int) -> SessionScores:
    seen = torch.isin(held_out.targets, torch.tensor(list(output_of)))
    targets = torch.tensor([output_of[int(t)] for t in held_out.targets[seen]], dtype=torch.int64)
    return session_scores(learner.predict(held_out.features[seen]), targets, num_base, len(output_of), session)


class ReferenceResult(TypedDict):
    """A full-data continual strategy's scores, as comparable to FSCIL's as they can be."""

    run: str  # the run directory
    strategy: str  # its name in strategies.STRATEGIES
    runs: int  # orders averaged over
    step_accuracy: list[float]  # mean accuracy after each step (step 0: the basic model)
    final_accuracy: float
    final_basic_accuracy: float
    final_compound_accuracy: float
    final_harmonic_mean: float  # of the final basic and compound accuracies
    average_accuracy: float  # the paper's Overall Accuracy: mean over steps, the basic one included
    same_test_subjects: bool | None  # scored on exactly the held-out subjects of this run (None: unknown)


def reference_results(run_dirs: Sequence[str | Path], held_out_subjects: Sequence[int] | None = None) -> list[ReferenceResult]:
    """The strategies of finished ``cfer train-incremental`` runs, summarised for the FSCIL table.

    Args:
        run_dirs: Run directories, each with its ``results.json``.
        held_out_subjects: Subjects the few-shot run scores on, to say whether the reference scored on the same.

    Returns:
        One entry per strategy of each run (mean over its orders).

    Raises:
        FileNotFoundError: If a run has no ``results.json``.
    """
    references: list[ReferenceResult] = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: fscil.reference_runs must be finished `cfer train-incremental` runs")
        results = read_json(path)
        test = results.get("subjects", {}).get("test")
        same = None if test is None or held_out_subjects is None else sorted(test) == sorted(held_out_subjects)
        for strategy, entry in results["strategies"].items():
            runs = [run for run in entry["runs"] if run.get("complete", True)]
            if not runs:
                continue
            basic = float(np.mean([run["final_basic_accuracy"] for run in runs]))
            compound = float(np.mean([run["final_compound_accuracy"] for run in runs]))
            references.append(ReferenceResult(
                run=str(run_dir), strategy=strategy, runs=len(runs),
                step_accuracy=np.mean([run["step_accuracy"] for run in runs], axis=0).tolist(),
                final_accuracy=float(np.mean([run["final_accuracy"] for run in runs])),
                final_basic_accuracy=basic, final_compound_accuracy=compound,
                final_harmonic_mean=harmonic_mean(basic, compound),
                average_accuracy=float(np.mean([run["average_step_accuracy"] for run in runs])),
                same_test_subjects=same))
    return references
