"""The ``cfer`` command line: one subcommand per job, each configured by a dataclass.

Every subcommand takes ``--config FILE.yaml`` and repeated ``--set key=value`` overrides (dotted keys
reach nested settings); its own flags are shorthands for the most used keys. An unknown key is an
error that lists the valid ones.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from cfer.config import ConfigError, config_to_dict, load_config
from cfer.io import DiskFullError, FolderLockedError, disk_full_error, hold_folder, space_error

if TYPE_CHECKING:  # the commands import what they run when they run
    from cfer.distributed import Ranks, RayConfig

T = TypeVar("T")

logger = logging.getLogger("cfer")



def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML file of settings (see configs/)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one setting, e.g. --set size=32; repeatable",
    )


def _flag_overrides(args: argparse.Namespace, flags: dict[str, str]) -> list[str]:
    """Turns the shorthand flags that were given into ``key=value`` overrides."""
    return [f"{key}={getattr(args, attribute)}" for attribute, key in flags.items() if getattr(args, attribute) is not None]


# --- beyond one process: Ray sweeps, torchrun ranks ------------------------------------------------

_RAY_FLAGS = {"ray_address": "address", "ray_cpus": "cpus_per_task", "ray_threads": "threads_per_task",
              "ray_gpus": "gpus_per_task", "ray_retries": "max_retries"}
_LOCAL_RAY = ""  # --ray without an address


def _add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ray [ADDRESS]`` and the resources of each task (settings: cfer.distributed.RayConfig)."""
    group = parser.add_argument_group("Ray", "run every (strategy, data seed, order) run as a Ray task "
                                      "(pip install 'cfer[ray]')")
    group.add_argument("--ray", dest="ray_address", nargs="?", const=_LOCAL_RAY, metavar="ADDRESS",
                       help="on Ray: alone, a local Ray on this machine's cores; 'auto' or ray://HOST:PORT, a cluster")
    group.add_argument("--ray-cpus", type=float, help="CPUs reserved per task (key: cpus_per_task, default 1)")
    group.add_argument("--ray-threads", type=int, help="torch threads per task (key: threads_per_task, default 1)")
    group.add_argument("--ray-gpus", type=float, help="GPU share per task, e.g. 0.25 (key: gpus_per_task, default 0)")
    group.add_argument("--ray-retries", type=int, help="restarts of a task whose worker died (key: max_retries, "
                       "default 3)")


def _ray_config(args: argparse.Namespace) -> RayConfig | None:
    """The ``RayConfig`` of the ``--ray*`` flags, or None without ``--ray`` (the runs stay in this process)."""
    from cfer.distributed import RayConfig

    if args.ray_address is None:
        return None
    overrides = [f"{key}={getattr(args, attribute)}" for attribute, key in _RAY_FLAGS.items()
                 if getattr(args, attribute) not in (None, _LOCAL_RAY)]
    return load_config(RayConfig, None, overrides)


def _sweep_failed(command: str, error: Exception) -> int:
    """Prints which tasks of a sweep failed, and why; the exit status of a sweep that did not finish."""
    print(f"cfer {command}: {error}", file=sys.stderr)
    return 1


def _for_rank(config: T, ranks: Ranks) -> T:
    """Rank 0 of a torchrun launch logs and draws progress bars; the other ranks keep quiet."""
    import dataclasses

    if ranks.main:
        return config
    logging.getLogger().setLevel(logging.WARNING)
    return dataclasses.replace(config, progress=False)


# --- cfer synth -------------------------------------------------------------------------------------

_SYNTH_FLAGS = {"subjects": "subjects", "size": "size", "seed": "seed"}


def _synth_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="render the embedded synthetic dataset to a CFEE-layout folder",
        description="Render the embedded synthetic dataset (settings: cfer.data.synthetic.SyntheticConfig) "
        "and write it in the CFEE_Database_230 layout with a manifest.csv of every target, "
        "and/or a labelled contact sheet.",
    )
    _add_config_arguments(parser)
    parser.add_argument("--out", type=Path, help="folder to write the CFEE-layout export to")
    parser.add_argument("--subjects", type=int, help="number of synthetic subjects (key: subjects)")
    parser.add_argument("--size", type=int, help="image side in pixels, 32-224 (key: size)")
    parser.add_argument("--seed", type=int, help="dataset seed (key: seed)")
    parser.add_argument("--contact-sheet", type=Path, metavar="PNG", help="also draw subjects x 22 categories")
    parser.add_argument("--sheet-subjects", type=int, default=6, help="rows of the contact sheet")
    parser.set_defaults(handler=_run_synth, holds="out")


def _run_synth(args: argparse.Namespace) -> int:
    from cfer.data.cfee import write_cfee
    from cfer.data.synthetic import SyntheticConfig, SyntheticFaces, contact_sheet

    config = load_config(SyntheticConfig, args.config, _flag_overrides(args, _SYNTH_FLAGS) + args.overrides)
    if args.out is None and args.contact_sheet is None:
        raise ConfigError("nothing to do: give --out DIR to export the dataset and/or --contact-sheet PNG")
    if args.contact_sheet is not None:
        rows = range(config.first_subject, config.first_subject + min(args.sheet_subjects, config.subjects))
        path = contact_sheet(args.contact_sheet, subjects=rows, categories=config.categories,
                             size=max(config.size, 96), seed=config.seed)
        print(f"contact sheet: {path}")
    if args.out is not None:
        dataset = SyntheticFaces(config)
        root = write_cfee(dataset, args.out)
        print(f"wrote {len(dataset)} images of {config.subjects} subjects x {len(config.categories)} categories "
              f"({config.size} px) to {root}, with {root / 'manifest.csv'}")
        for key, value in config_to_dict(config).items():
            logger.debug("%s = %s", key, value)
    return 0


# --- cfer train-basic -------------------------------------------------------------------------------

_TRAIN_BASIC_FLAGS = {"folds": "folds", "fold": "fold", "backbone": "model.backbone", "size": "data.size",
                      "subjects": "data.subjects", "dataset": "data.source", "root": "data.root", "device": "device"}


def _add_data_flags(parser: argparse.ArgumentParser, keys: dict[str, str]) -> None:
    """Shorthand flags for the data and model settings; ``keys`` maps each flag to its config key."""
    from cfer.data.sources import SOURCES

    parser.add_argument("--dataset", choices=list(SOURCES), help=f"image source (key: {keys['dataset']})")
    parser.add_argument("--root", help=f"the dataset's folder, or CSV file for --dataset csv (key: {keys['root']})")
    parser.add_argument("--size", type=int, help=f"image side in pixels (key: {keys['size']})")
    parser.add_argument("--subjects", type=int, help=f"synthetic subjects (key: {keys['subjects']})")
    parser.add_argument("--backbone", help=f"any timm model name (key: {keys['backbone']})")
    parser.add_argument("--device", help=f"auto, cpu or cuda (key: {keys['device']})")


def _train_basic_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train-basic",
        help="basic phase: fine-tune an ImageNet CNN on the basic expressions with subject-wise CV",
        description="Train the basic-expression model in the paper's two stages over subject-wise folds "
        "(settings: cfer.training.basic.BasicPhaseConfig, preset configs/basic.yaml). "
        "Started again with the same --out, an interrupted run resumes. Under torchrun (torchrun --nproc_per_node N "
        "-m cfer train-basic ...) the processes train each fold together with DistributedDataParallel.",
    )
    _add_config_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("runs/basic"), help="run directory (default: runs/basic)")
    parser.add_argument("--folds", type=int, help="number of subject-wise folds (key: folds)")
    parser.add_argument("--fold", type=int, help="run this fold only (key: fold)")
    _add_data_flags(parser, _TRAIN_BASIC_FLAGS)
    parser.set_defaults(handler=_run_train_basic, holds="out")


def _run_train_basic(args: argparse.Namespace) -> int:
    from cfer.distributed import process_group
    from cfer.training.basic import BasicPhaseConfig, run_basic_phase

    config = load_config(BasicPhaseConfig, args.config, _flag_overrides(args, _TRAIN_BASIC_FLAGS) + args.overrides)
    with process_group(config.device) as ranks:  # the processes of torchrun -m cfer train-basic, if any
        summary = run_basic_phase(_for_rank(config, ranks), args.out)
    if ranks.main:
        print(format_basic_summary(summary, args.out))
    return 0


def format_basic_summary(summary: dict, out_dir: Path) -> str:
    """The one-screen text summary of a basic-phase run."""
    lines = [f"basic phase: {len(summary['classes'])} classes ({', '.join(summary['classes'])}), "
             f"chance {summary['chance']:.3f}"]
    for fold in summary["folds"]:
        lines.append(f"  fold {fold['fold']:>2}: test accuracy {fold['test_accuracy']:.3f}  "
                     f"val accuracy {fold['val_accuracy']:.3f}  {fold['epochs']} epochs  {fold['seconds']:.0f} s")
    lines.append(f"test accuracy over folds: {summary['test_accuracy_mean']:.3f} +- {summary['test_accuracy_std']:.3f}")
    best = summary["best_fold_test"]
    chosen_on = summary.get("selected_on", "validation subjects")
    lines.append(f"selected fold {summary['best_fold']} (on {chosen_on}); its per-class F1 on test:")
    lines.append("  " + "  ".join(f"{name} {v['f1']:.2f}" for name, v in best["per_class"].items()))
    if best.get("action_units", {}).get("mean_f1") is not None:
        units = best["action_units"]
        lines.append(f"action units on test: mean F1 {units['mean_f1']:.3f} (saying every AU is present: "
                     f"{units['mean_always_present_f1']:.3f}); per AU:")
        lines.append("  " + "  ".join(f"{au} {f1:.2f}" for au, f1 in units["f1"].items() if f1 is not None))
    lines.append(f"wall time {summary['wall_seconds']:.0f} s; model, metrics and figures in {out_dir}/")
    return "\n".join(lines)


# --- cfer train-incremental -------------------------------------------------------------------------

_TRAIN_INCREMENTAL_FLAGS = {"orders": "orders", "seed": "seed", "epochs": "epochs", "device": "device",
                            "protocol": "protocol",
                            "backbone": "basic.model.backbone", "size": "basic.data.size",
                            "subjects": "basic.data.subjects", "dataset": "basic.data.source",
                            "root": "basic.data.root"}


def _train_incremental_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train-incremental",
        help="continual phase: add the compound classes one at a time (basic phase included)",
        description="Run the basic phase (reused when finished), then add the 15 compound classes one output "
        "unit at a time with the paper's strategy and/or baselines, over one or more class orders "
        "(settings: cfer.continual.IncrementalConfig, preset configs/incremental.yaml). "
        "Started again with the same --out, an interrupted run resumes from its last finished step.",
    )
    _add_config_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("runs/incremental"),
                        help="run directory (default: runs/incremental)")
    parser.add_argument("--strategies", help="comma-separated names, e.g. cfer,naive,replay,lwf,icarl (key: strategies)")
    parser.add_argument("--orders", type=int, help="random orders of the compound classes (key: orders)")
    parser.add_argument("--seed", type=int, help="seed of the orders and training (key: seed)")
    parser.add_argument("--epochs", type=int, help="most epochs per incremental step (key: epochs)")
    parser.add_argument("--protocol", choices=["held-out", "reference"],
                        help="held-out (default): choose on validation subjects, report test subjects; reference: "
                        "as the reference code, early-stop and pick the fold on the reported images, PSMR by logit "
                        "(key: protocol)")
    _add_data_flags(parser, _TRAIN_INCREMENTAL_FLAGS)
    _add_ray_arguments(parser)
    parser.set_defaults(handler=_run_train_incremental, holds="out")


def _run_train_incremental(args: argparse.Namespace) -> int:
    from cfer.continual import (
        IncrementalConfig,
        format_incremental_summary,
        run_incremental,
    )

    overrides = _flag_overrides(args, _TRAIN_INCREMENTAL_FLAGS)
    if args.strategies is not None:
        names = [name.strip() for name in args.strategies.split(",") if name.strip()]
        overrides.append(f"strategies=[{', '.join(names)}]")
    config = load_config(IncrementalConfig, args.config, overrides + args.overrides)
    ray = _ray_config(args)
    if ray is None:
        summary = run_incremental(config, args.out)
    else:
        from cfer.continual.sweep import run_incremental_sweep
        from cfer.distributed import SweepError

        try:
            (summary,) = run_incremental_sweep(args.out, [(config, args.out)], ray)
        except SweepError as error:
            return _sweep_failed(args.command, error)
    print(format_incremental_summary(summary, args.out))
    return 0


# --- cfer compare ---------------------------------------------------------------------------------

_COMPARE_FLAGS = {"orders": "orders", "recommended": "recommended", "other_orders": "other_orders"}


def _compare_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="every strategy over orders and data seeds, with paired tests, a table and a plot",
        description="Run (or reuse) cfer train-incremental for every strategy over ORDERS random orders and several "
        "synthetic data seeds, also under the reference protocol for some, and write comparison.md, comparison.json "
        "and accuracy_vs_classes.png (settings: cfer.continual.CompareConfig; the runs' settings under run.*).",
    )
    _add_config_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("runs/compare"), help="output directory (default: runs/compare)")
    parser.add_argument("--tested", help="comma-separated strategies run on every seed and order (key: tested)")
    parser.add_argument("--others", help="comma-separated strategies run on the first seed's first orders (key: others)")
    parser.add_argument("--seeds", help="comma-separated synthetic data seeds (key: data_seeds)")
    parser.add_argument("--orders", type=int, help="orders per seed (key: orders)")
    parser.add_argument("--other-orders", type=int, help="orders of the first seed for the others (key: other_orders)")
    parser.add_argument("--recommended", help="the strategy tested against the others (key: recommended)")
    _add_ray_arguments(parser)
    parser.set_defaults(handler=_run_compare, holds="out")


def _run_compare(args: argparse.Namespace) -> int:
    from cfer.continual.compare import CompareConfig, run_comparison
    from cfer.distributed import SweepError

    overrides = _flag_overrides(args, _COMPARE_FLAGS)
    for flag, key in ((args.tested, "tested"), (args.others, "others")):
        if flag is not None:
            overrides.append(f"{key}=[{flag}]")
    if args.seeds is not None:
        overrides.append(f"data_seeds=[{args.seeds}]")
    config = load_config(CompareConfig, args.config, overrides + args.overrides)
    try:
        run_comparison(config, args.out, ray=_ray_config(args))
    except SweepError as error:
        return _sweep_failed(args.command, error)
    print((args.out / "comparison.md").read_text(encoding="utf-8"))
    return 0


# --- cfer fewshot -----------------------------------------------------------------------------------

_FEWSHOT_FLAGS = {"basic_run": "basic_run", "episodes": "episodic.episodes", "seeds": "paper.seeds",
                  "device": "device", "evaluate_on": "evaluate_on"}
_FEWSHOT_PROTOCOLS = ("fscil", "paper", "episodic")


def _fewshot_protocols(text: str) -> list[str]:
    """``--protocol``: comma-separated names among fscil, paper and episodic, or ``all``."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        return list(_FEWSHOT_PROTOCOLS)
    unknown = sorted(set(names) - set(_FEWSHOT_PROTOCOLS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown protocol(s) {unknown or text!r}; known: all, {', '.join(_FEWSHOT_PROTOCOLS)}")
    return names


def _fewshot_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "fewshot",
        help="few-shot learning of compound classes: FSCIL sessions, the paper's protocol, episodic evaluation",
        description="Add compound classes to the basic-phase model from K shots with each few-shot method (paper, "
        "paper+memory, imprint, teen, imprint-ft, ranpac, c-ranpac, and compose, which builds each compound from its "
        "components): in few-shot class-incremental sessions (fscil: 15 sessions of one "
        "class, per-session accuracy, base/novel accuracy and their harmonic mean, beside full-data continual runs), "
        "one class at a time as the paper does (paper: scored two ways), and in N-way K-shot episodes with a frozen "
        "backbone, ImageNet-only versus basic-phase trained (episodic). All three run by default: on features "
        "computed once they cost little beside the basic phase, and the paper's figure means little without the "
        "others (settings: cfer.fewshot.FewShotConfig, preset configs/fewshot.yaml). A rerun with the same --out "
        "reuses the features and every finished part.",
    )
    _add_config_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("runs/fewshot"), help="output directory (default: runs/fewshot)")
    parser.add_argument("--basic-run", help="a finished `cfer train-basic` run directory to reuse (key: basic_run)")
    parser.add_argument("--protocol", type=_fewshot_protocols, default=list(_FEWSHOT_PROTOCOLS),
                        help="comma-separated protocols to run: fscil, paper, episodic, or all (default: all; keys: "
                        "fscil.enabled, paper.enabled, episodic.enabled)")
    parser.add_argument("--methods", help="comma-separated few-shot methods, e.g. imprint,teen (key: methods)")
    parser.add_argument("--reference-run", action="append", default=[], metavar="DIR",
                        help="a finished `cfer train-incremental` run to show beside FSCIL as the full-data upper "
                        "reference; repeatable (key: fscil.reference_runs)")
    parser.add_argument("--episodes", type=int, help="episodes per episodic setting (key: episodic.episodes)")
    parser.add_argument("--seeds", type=int, help="shot-selection seeds of the paper protocol (key: paper.seeds)")
    parser.add_argument("--evaluate-on", choices=["held-out", "validation"],
                        help="score held-out subjects (default), or the basic run's validation subjects to choose "
                        "settings (key: evaluate_on)")
    parser.add_argument("--device", help="auto, cpu or cuda (key: device)")
    parser.add_argument("--skip-paper", action="store_true", help="skip the paper's protocol")
    parser.add_argument("--skip-episodic", action="store_true", help="skip the episodic evaluation")
    _add_ray_arguments(parser)
    parser.set_defaults(handler=_run_fewshot, holds="out")


def _run_fewshot(args: argparse.Namespace) -> int:
    from cfer.fewshot import FewShotConfig, format_fewshot_summary, run_fewshot

    overrides = _flag_overrides(args, _FEWSHOT_FLAGS)
    skipped = {"paper": args.skip_paper, "episodic": args.skip_episodic}
    overrides += [f"{name}.enabled=false" for name in _FEWSHOT_PROTOCOLS if name not in args.protocol or skipped.get(name)]
    if args.methods is not None:
        overrides.append(f"methods=[{', '.join(name.strip() for name in args.methods.split(',') if name.strip())}]")
    if args.reference_run:
        overrides.append(f"fscil.reference_runs=[{', '.join(args.reference_run)}]")
    config = load_config(FewShotConfig, args.config, overrides + args.overrides)
    logging.getLogger("cfer.models").setLevel(logging.WARNING)  # one line per added output unit otherwise
    ray = _ray_config(args)
    if ray is None:
        summary = run_fewshot(config, args.out)
    else:
        from cfer.distributed import SweepError
        from cfer.fewshot.sweep import run_fewshot_sweep

        try:
            summary = run_fewshot_sweep(config, args.out, ray)
        except SweepError as error:
            return _sweep_failed(args.command, error)
    print(format_fewshot_summary(summary))
    return 0


# --- cfer gradcam -----------------------------------------------------------------------------------

_GRADCAM_FLAGS = {"method": "method", "target_layer": "target_layer", "subjects": "subjects", "size": "size"}


def _gradcam_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "gradcam",
        help="Grad-CAM maps of a trained model: basic-compound panels, a subject grid and scores",
        description="Explain a trained model on held-out synthetic faces with a pytorch-grad-cam method: maps of each "
        "compound class beside its basic components, one subject's grid of all categories, the similarity of "
        "compound maps to component versus other basic maps, and pointing-game scores against the true AU regions "
        "(settings: cfer.cam.GradCamConfig).",
    )
    _add_config_arguments(parser)
    parser.add_argument("--run", required=True, type=Path, help="a run directory (e.g. runs/basic) or a checkpoint file")
    parser.add_argument("--out", type=Path, default=Path("runs/gradcam"), help="output directory (default: runs/gradcam)")
    parser.add_argument("--method", help="CAM method, e.g. gradcam, gradcam++, layercam, eigencam (key: method)")
    parser.add_argument("--target-layer", help="dotted module name; default: found automatically (key: target_layer)")
    parser.add_argument("--subjects", type=int, help="held-out subjects to explain (key: subjects)")
    parser.add_argument("--size", type=int, help="image side in pixels; default: the run's (key: size)")
    parser.add_argument("--no-probe", action="store_true",
                        help="do not fit a linear probe over all categories for a basic-only model")
    parser.set_defaults(handler=_run_gradcam, holds="out")


def _run_gradcam(args: argparse.Namespace) -> int:
    from cfer.cam import GradCamConfig, format_gradcam_summary, run_gradcam

    overrides = _flag_overrides(args, _GRADCAM_FLAGS) + (["fit_probe=false"] if args.no_probe else [])
    config = load_config(GradCamConfig, args.config, overrides + args.overrides)
    summary = run_gradcam(args.run, args.out, config)
    print(format_gradcam_summary(summary))
    return 0


# --- cfer preprocess --------------------------------------------------------------------------------

_PREPROCESS_FLAGS = {"size": "size", "margin": "margin", "layout": "layout"}


def _preprocess_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "preprocess",
        help="detect, align and crop the face in each photo, and write a dataset cfer reads",
        description="Find the face of each photo of IN (a folder per class, a CSV manifest, or a flat folder) with "
        "MTCNN, align it on its 5 landmarks (eye line level), crop it with a margin, and write OUT as a folder per "
        "class (--dataset folder) or images plus manifest.csv (--dataset csv), with report.csv listing every photo "
        "without a face, with several faces, or damaged (settings: cfer.data.faces.PreprocessConfig). An "
        "interrupted run resumes.",
    )
    _add_config_arguments(parser)
    parser.add_argument("input", type=Path, metavar="IN", help="folder of photos (one sub-folder per class, or none), "
                        "or a CSV manifest")
    parser.add_argument("output", type=Path, metavar="OUT", help="folder to write the faces to")
    parser.add_argument("--size", type=int, help="side of the written faces in pixels (key: size)")
    parser.add_argument("--margin", type=float, help="room around the face, e.g. 0.25 (key: margin)")
    parser.add_argument("--layout", choices=["folder", "manifest"], help="output layout (key: layout)")
    parser.set_defaults(handler=_run_preprocess, holds="output")


def _run_preprocess(args: argparse.Namespace) -> int:
    from cfer.data.faces import PreprocessConfig, preprocess_images

    config = load_config(PreprocessConfig, args.config, _flag_overrides(args, _PREPROCESS_FLAGS) + args.overrides)
    summary = preprocess_images(args.input, args.output, config)
    counts = ", ".join(f"{count} {status}" for status, count in summary["counts"].items())
    print(f"preprocessed {summary['images']} image(s) in {summary['seconds']:.1f} s "
          f"({summary['faces_per_second']:.1f} faces/s): {counts}")
    print(f"faces in {args.output}/, every image's outcome in {summary['report']}")
    return 0


# --- cfer distill -----------------------------------------------------------------------------------

_DISTILL_FLAGS = {"epochs": "epochs", "device": "device", "subjects": "data.subjects"}


def _config_epilog(config: object, prefix: str = "") -> str:
    """Every key of a config dataclass instance with its value and comment, nested sections included."""
    import dataclasses
    import inspect
    import re

    comments = {}
    for line in inspect.getsource(type(config)).splitlines():
        match = re.match(r"\s+(\w+): .*?#\s*(.*)$", line)
        if match:
            comments[match[1]] = match[2]
    lines = []
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if dataclasses.is_dataclass(value):
            lines.append(f"  {prefix}{item.name}.*: {comments.get(item.name, '')}")
            lines.append(_config_epilog(value, prefix + item.name + "."))
            continue
        lines.append(f"  {prefix}{item.name} = {value!r}: {comments.get(item.name, '')}")
    return "\n".join(lines)


def _distill_parser(subparsers) -> None:
    from cfer.distill import DistillConfig

    parser = subparsers.add_parser(
        "distill",
        help="train an ensemble of teachers on classes and valence/arousal, then distil it into a light student",
        description="Train the teachers (multi-task: the expression classes plus valence and arousal in [-1, 1]), "
        "average them into an ensemble, and train each student: without distillation, with Hinton KD from the best "
        "teacher (Lee et al. 2023, Eq. 1), with Hinton KD plus the teacher-bounded regression loss (Chen et al. 2017), "
        "and from the ensemble's label-smoothed soft labels (EmoXNetLite). Writes accuracy, macro-F1, valence/arousal "
        "RMSE, PCC, CCC and SAGR, parameters, MACs, CPU latency and throughput of every model to results.json and "
        "results.md, and accuracy_vs_macs.png (settings: cfer.distill.DistillConfig). A rerun reuses finished models.",
        epilog="settings (--set KEY=VALUE; lists as [a, b]; teachers as [{backbone: efficientnet_lite2, size: 128}]):\n"
        + _config_epilog(DistillConfig()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("runs/distill"), help="output directory (default: runs/distill)")
    parser.add_argument("--epochs", type=int, help="most epochs per network (key: epochs)")
    parser.add_argument("--subjects", type=int, help="synthetic subjects (key: data.subjects)")
    parser.add_argument("--device", help="auto, cpu or cuda (key: device)")
    parser.set_defaults(handler=_run_distill, holds="out")


def _run_distill(args: argparse.Namespace) -> int:
    from cfer.distill import DistillConfig, format_distill_summary, run_distillation
    from cfer.distributed import process_group

    config = load_config(DistillConfig, args.config, _flag_overrides(args, _DISTILL_FLAGS) + args.overrides)
    with process_group(config.device) as ranks:  # the processes of torchrun -m cfer distill, if any
        summary = run_distillation(_for_rank(config, ranks), args.out)
    if not ranks.main:
        return 0
    print(format_distill_summary(summary))
    print(f"reports in {args.out}/ (results.json, results.md, accuracy_vs_macs.png)")
    return 0


# --- cfer predict -----------------------------------------------------------------------------------

_PREDICT_FLAGS = {"cam": "cam", "annotate": "annotate", "size": "size", "stride": "video_stride", "threads": "threads",
                  "top_k": "predictor.top_k", "detect_every": "predictor.detect_every", "device": "predictor.device"}


def _predict_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="expressions of the faces in photos, folders and videos, with a trained model",
        description="Find, align and classify every face of the inputs (images, folders searched recursively, video "
        "files read with OpenCV) with a trained model, and write predictions.csv and predictions.json (one row per "
        "face, or per face and frame), skipped.csv for inputs that gave nothing, optional Grad-CAM overlays and an "
        "annotated video (settings: cfer.predict.PredictConfig).",
    )
    _add_config_arguments(parser)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image, video or folder")
    parser.add_argument("--model", required=True, help="a run directory (e.g. runs/incremental), a checkpoint "
                        "(.safetensors) or a `cfer export` file (.onnx, .pt)")
    parser.add_argument("--out", type=Path, default=Path("runs/predict"), help="output folder (default: runs/predict)")
    parser.add_argument("--cam", metavar="METHOD", help="write a class activation map per face, e.g. gradcam (key: cam)")
    parser.add_argument("--annotate", metavar="OUT.mp4", help="write the (one) input video with boxes and labels "
                        "(key: annotate)")
    parser.add_argument("--no-detect", action="store_true", help="each image is one already cropped face "
                        "(key: predictor.detect=false)")
    parser.add_argument("--top-k", type=int, help="classes listed per face (key: predictor.top_k)")
    parser.add_argument("--detect-every", type=int, help="video: a full face detection every N frames, faces "
                        "followed in between (key: predictor.detect_every)")
    parser.add_argument("--stride", type=int, help="video: predict every N-th frame (key: video_stride)")
    parser.add_argument("--size", type=int, help="face-crop side in pixels; default: as trained (key: size)")
    parser.add_argument("--device", help="auto, cpu or cuda (key: predictor.device)")
    parser.add_argument("--threads", type=int, help="CPU threads; on a busy CPU try 1 (key: threads)")
    parser.add_argument("--max-rows", type=int, default=20, help="rows of the printed table (default: 20)")
    parser.set_defaults(handler=_run_predict, holds="out")


def _run_predict(args: argparse.Namespace) -> int:
    from cfer.predict import PredictConfig, format_predict_summary, run_predict

    overrides = _flag_overrides(args, _PREDICT_FLAGS) + (["predictor.detect=false"] if args.no_detect else [])
    config = load_config(PredictConfig, args.config, overrides + args.overrides)
    summary = run_predict(args.model, args.inputs, args.out, config)
    print(format_predict_summary(summary, args.max_rows))
    return 0


# --- cfer export ------------------------------------------------------------------------------------

_EXPORT_FLAGS = {"format": "format", "size": "size"}


def _export_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a trained model to ONNX or TorchScript, its input contract in the file's metadata",
        description="Write a trained model as ONNX (for ONNX Runtime ...) or TorchScript, with a dynamic batch axis; "
        "the file's metadata (ONNX metadata_props, TorchScript extra file cfer_metadata.json) records the class "
        "names, the input size, channel order, mean and std, how faces are cropped, and whether it outputs valence "
        "and arousal (cfer.models.export.ModelSpec). The export is checked against PyTorch on synthetic faces "
        "(settings: cfer.predict.ExportConfig).",
    )
    _add_config_arguments(parser)
    parser.add_argument("--model", required=True, help="a run directory (e.g. runs/incremental) or a checkpoint")
    parser.add_argument("--out", required=True, type=Path, help="the file to write, e.g. model.onnx or model.pt")
    parser.add_argument("--format", help="onnx or torchscript; default: from the --out suffix (key: format)")
    parser.add_argument("--size", type=int, help="input side in pixels; default: as trained (key: size)")
    parser.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from cfer.predict import ExportConfig, format_export_summary, run_export

    config = load_config(ExportConfig, args.config, _flag_overrides(args, _EXPORT_FLAGS) + args.overrides)
    print(format_export_summary(run_export(args.model, args.out, config)))
    return 0


# --- entry point ------------------------------------------------------------------------------------

_PARSERS: list[Callable] = [
    _synth_parser, _preprocess_parser, _train_basic_parser, _train_incremental_parser, _compare_parser,
    _fewshot_parser, _gradcam_parser, _distill_parser, _predict_parser, _export_parser,
]


def build_parser() -> argparse.ArgumentParser:
    """The ``cfer`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="cfer",
        description="Continual and few-shot learning of compound facial expressions "
        "(Maiden & Nakisa 2023). Every command runs offline on the embedded synthetic dataset by default.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _PARSERS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``cfer`` command line; returns the exit status."""
    # Avalanche imports qpsolvers, which warns on import that no QP solver is installed; only
    # GEM-style strategies need one, and none of cfer's commands do.
    warnings.filterwarnings("ignore", message="no QP solver found", category=UserWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with _holding(args):
            return args.handler(args)
    except (ConfigError, FileNotFoundError, ValueError, KeyError, DiskFullError, FolderLockedError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"cfer {args.command}: error: {message}", file=sys.stderr)
        return 2
    except Exception as error:  # a write outside cfer's own writers (a logger, a library) that filled the disk
        full = space_error(error)
        if full is None:
            raise
        print(f"cfer {args.command}: error: {disk_full_error(full, full.filename or Path.cwd())}", file=sys.stderr)
        return 2


def _holding(args: argparse.Namespace) -> AbstractContextManager[object]:
    """Holds the command's output folder (``cfer.io.hold_folder``); under torchrun, rank 0 alone holds it."""
    folder = getattr(args, getattr(args, "holds", ""), None)
    if folder is None or os.environ.get("RANK", "0") != "0":
        return nullcontext()
    return hold_folder(folder, command=f"cfer {args.command}")


if __name__ == "__main__":
    sys.exit(main())
