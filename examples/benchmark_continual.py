"""Cached against uncached incremental steps, and distillation against naive, in one process on one stream.

Runs the first ``--steps`` incremental steps of one order of the default ``cfer train-incremental``
settings (default model, 64 px, the default memory) several ways, on the same basic-phase model and
the same stream:

* ``cfer`` on images, computing the frozen trunk and the frozen teacher on every batch (the path
  without a feature cache: ``feature_cache.mode=never``, ``memoize_teacher: false``);
* ``cfer`` on the cached trunk activations, with the teacher's logits kept per sample (the default);
* ``naive`` fine-tuning on the cached activations, for the cost of distillation per trained image.

It prints the mean wall time of a step for both ``cfer`` paths and their ratio, and the images per
second of the training loop (epochs only: no validation, evaluation or ranking) of ``cfer`` and
``naive``, whose ratio is what distillation costs per trained image. Results go to
``OUT/benchmark.json``. Usage::

    python examples/benchmark_continual.py --out runs/benchmark_continual [--basic-run runs/incremental/basic]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

from cfer.config import load_config
from cfer.continual import IncrementalConfig, run_incremental

PATHS = {
    "cfer, uncached": ["strategies=[cfer]", "feature_cache.mode=never",
                       "strategy_options={cfer: {memoize_teacher: false}}"],
    "cfer, cached": ["strategies=[cfer]", "feature_cache.mode=always"],
    "naive, cached": ["strategies=[naive]", "feature_cache.mode=always"],
}


def run_path(out: Path, name: str, overrides: list[str], basic_run: Path) -> dict:
    """One path over the first steps; returns its per-step wall times and training-loop throughput."""
    folder = out / name.replace(", ", "_")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copytree(basic_run, folder / "basic")
    start = time.perf_counter()
    summary = run_incremental(load_config(IncrementalConfig, overrides=overrides), folder)
    steps = next(iter(summary["strategies"].values()))["runs"][0]["steps"][1:]  # the incremental steps
    images = sum(step["train_images"] for step in steps)
    seconds = sum(step["train_loop_seconds"] for step in steps)
    return {
        "step_seconds": [step["wall_seconds"] for step in steps],
        "mean_step_seconds": statistics.mean(step["wall_seconds"] for step in steps),
        "train_images": images,
        "train_loop_seconds": seconds,
        "train_images_per_second": images / seconds,
        "step_accuracy": [step["accuracy"] for step in steps],
        "wall_seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark_continual"))
    parser.add_argument("--basic-run", type=Path, help="a finished basic phase of the default settings to reuse")
    parser.add_argument("--steps", type=int, default=5, help="incremental steps to time (of 15)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra KEY=VALUE settings")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    common = [f"max_experiences={args.steps + 1}", *args.overrides]
    basic_run = args.basic_run
    if basic_run is None:  # train the basic phase once, through the same command
        basic_run = args.out / "shared" / "basic"
        if not (basic_run / "model.safetensors").exists():
            run_incremental(load_config(IncrementalConfig, overrides=[*common, "max_experiences=1"]), basic_run.parent)
    results = {name: run_path(args.out, name, [*common, *overrides], basic_run) for name, overrides in PATHS.items()}
    uncached, cached, naive = results.values()
    speedup = uncached["mean_step_seconds"] / cached["mean_step_seconds"]
    distillation = naive["train_images_per_second"] / cached["train_images_per_second"]
    results["ratios"] = {"cached_step_speedup": speedup, "cfer_cost_per_trained_image_vs_naive": distillation,
                         "identical_step_accuracy": uncached["step_accuracy"] == cached["step_accuracy"]}
    (args.out / "benchmark.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"{'path':<16} {'s / step':>9} {'train img/s':>12}")
    for name in PATHS:
        print(f"{name:<16} {results[name]['mean_step_seconds']:>9.2f} {results[name]['train_images_per_second']:>12.1f}")
    print(f"cached cfer step: {speedup:.2f}x faster than uncached (target >= 4x); same step accuracies: "
          f"{results['ratios']['identical_step_accuracy']}")
    print(f"cfer costs {distillation:.3f}x naive per trained image (target <= 1.10)")


if __name__ == "__main__":
    main()
