"""Choose the per-step budget of ``cfer train-incremental`` on validation subjects.

Runs ``cfer`` over one order for every combination of ``--epochs``, ``--lr`` and
``--trainable-blocks`` on the same basic-phase model, and ranks them by the mean, over the 15
incremental steps, of the validation accuracy of the weights each step kept (validation subjects
only: the test subjects that the README reports are never looked at to choose). The test figures are
printed beside them for information. Results go to ``OUT/budgets.json`` and ``OUT/budgets.md``.

Usage::

    python examples/tune_step_budget.py --basic-run runs/incremental/basic --out runs/budgets \\
        --epochs 3 8 --lr 1e-3 3e-4 --trainable-blocks 1 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
from pathlib import Path

from cfer.config import load_config
from cfer.continual import IncrementalConfig, run_incremental


def run_budget(out: Path, basic_run: Path, epochs: int, lr: float, blocks: int, extra: list[str]) -> dict:
    """One budget over one order; returns its validation and test figures and its time."""
    folder = out / f"epochs{epochs}_lr{lr:g}_blocks{blocks}"
    finished = folder / "results.json"
    if finished.exists() and json.loads(finished.read_text(encoding="utf-8"))["complete"]:
        summary = json.loads(finished.read_text(encoding="utf-8"))  # a finished budget is reused as it is
    else:
        if not (folder / "basic").exists():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copytree(basic_run, folder / "basic")
        overrides = [f"epochs={epochs}", f"lr={lr}", f"trainable_blocks={blocks}", *extra]
        summary = run_incremental(load_config(IncrementalConfig, overrides=overrides), folder)
    run = summary["strategies"]["cfer"]["runs"][0]
    steps = run["steps"][1:]
    return {
        "epochs": epochs,
        "lr": lr,
        "trainable_blocks": blocks,
        "valid_mean_accuracy": statistics.mean(step["valid_metric"] for step in steps),
        "test_overall_accuracy": summary["strategies"]["cfer"]["aggregate"]["overall_accuracy"],
        "test_final_accuracy": run["step_accuracy"][-1],
        "epochs_run": statistics.mean(step["epochs"] for step in steps),
        "seconds_per_step": statistics.mean(step["wall_seconds"] for step in steps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--basic-run", type=Path, required=True, help="a finished basic phase to reuse")
    parser.add_argument("--out", type=Path, default=Path("runs/budgets"))
    parser.add_argument("--epochs", type=int, nargs="+", default=[3, 8])
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-3, 3e-4])
    parser.add_argument("--trainable-blocks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra KEY=VALUE settings")
    args = parser.parse_args()
    results = [run_budget(args.out, args.basic_run, epochs, lr, blocks, args.overrides)
               for epochs, lr, blocks in itertools.product(args.epochs, args.lr, args.trainable_blocks)]
    results.sort(key=lambda r: -r["valid_mean_accuracy"])
    (args.out / "budgets.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    lines = ["| epochs | lr | trainable blocks | validation accuracy (chosen on) | test overall | test final | "
             "epochs run | s / step |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['epochs']} | {r['lr']:g} | {r['trainable_blocks']} | {r['valid_mean_accuracy']:.3f} | "
              f"{r['test_overall_accuracy']:.3f} | {r['test_final_accuracy']:.3f} | {r['epochs_run']:.1f} | "
              f"{r['seconds_per_step']:.1f} |" for r in results]
    (args.out / "budgets.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
