"""A sweep of 4 runs in the process against a local Ray with 2 workers, and the basic phase on 1 and 2 gloo ranks.

Part 1 runs the same ``cfer train-incremental`` sweep twice, each from a fresh interpreter and one
torch thread per run: ``--strategies cfer,naive --orders 2`` (4 runs), first in the process, one run
after the other, then with ``--ray`` (a local Ray on this machine's cores, one CPU and one thread per
task). Both reuse the same finished basic phase (trained once, first, and copied), so what is timed
is the sweep: opening the session (data, feature cache) and the 4 runs; the Ray side also pays for
starting Ray and its workers. It reports both wall times, their ratio, the peak memory (the largest
sum of the resident memory of the command's process tree, sampled every 0.2 s) and whether the
per-run metrics are equal.

Part 2 trains one fold of ``cfer train-basic`` in one process and under ``torchrun --nproc_per_node
2`` (gloo, one thread per process) and reports the fine-tuning stage's time per epoch (its training
images over the loop's median images per second, both counted over all ranks).

Results go to ``OUT/benchmark_ray.json``. Usage::

    python examples/benchmark_ray.py --out runs/benchmark_ray [--subjects 80] [--epochs 8]

Needs Ray (``pip install 'cfer[ray]'``) and psutil for the memory figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from cfer.io import write_json

try:
    import psutil
except ImportError:  # the memory figures are left out
    psutil = None

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def measure(command: list[str], env: dict[str, str] | None = None) -> dict:
    """Runs ``command``; its wall time and the peak summed RSS of its process tree (MiB)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env={**os.environ, **ONE_THREAD, **(env or {})},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = {"mib": 0.0}
    done = threading.Event()

    def sample() -> None:
        if psutil is None:
            return
        root = psutil.Process(process.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak["mib"] = max(peak["mib"], sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20)
            except psutil.Error:
                pass
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output[-4000:]}")
    return {"wall_seconds": time.perf_counter() - start, "peak_rss_mib": peak["mib"] if psutil else None}


def cfer(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "cfer", *arguments]


def sweep(out: Path, subjects: int, epochs: int) -> dict:
    settings = ["--subjects", str(subjects), "--epochs", str(epochs), "--device", "cpu",
                "--set", "basic.progress=false", "--set", "confusion_plots=none"]
    basic = out / "basic_once"
    measure(cfer("train-incremental", "--out", str(basic), *settings, "--strategies", "naive",
                 "--set", "max_experiences=1"))  # trains the basic phase (and one step, which is dropped)
    results = {}
    for mode, extra in (("in_process", []), ("ray_local", ["--ray", "--ray-cpus", "1", "--ray-threads", "1"])):
        run = out / mode
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(basic / "basic", run / "basic")
        results[mode] = measure(cfer("train-incremental", "--out", str(run), *settings, "--strategies", "cfer,naive",
                                     "--orders", "2", *extra))
        print(f"{mode}: {results[mode]['wall_seconds']:.1f} s, peak {results[mode]['peak_rss_mib'] or 0:.0f} MiB",
              flush=True)
    results["speedup"] = results["in_process"]["wall_seconds"] / results["ray_local"]["wall_seconds"]
    results["same_metrics"] = _metrics(out / "in_process") == _metrics(out / "ray_local")
    return results


def _metrics(run: Path) -> dict:
    summary = json.loads((run / "results.json").read_text())
    return {name: [[step["accuracy"] for step in r["steps"]] for r in entry["runs"]]
            for name, entry in summary["strategies"].items()}


def basic_epochs(out: Path, subjects: int, epochs: int) -> dict:
    settings = ["--subjects", str(subjects), "--folds", "5", "--fold", "0", "--device", "cpu",
                "--set", f"finetune_epochs={epochs}", "--set", "head_epochs=5", "--set", f"patience={epochs}",
                "--set", "progress=false"]
    results = {}
    for ranks in (1, 2):
        run = out / f"basic_{ranks}_rank"
        shutil.rmtree(run, ignore_errors=True)
        launcher = ([sys.executable, "-m", "cfer"] if ranks == 1 else
                    [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
                     "-m", "cfer"])
        timing = measure([*launcher, "train-basic", "--out", str(run), *settings])
        fold = json.loads((run / "fold_0" / "metrics.json").read_text())
        # the synthetic source draws one image per (subject, basic class)
        train_images = len(fold["subjects"]["train"]) * len(fold["test"]["per_class"])
        results[f"{ranks}_rank"] = timing | {
            "train_images_per_second": fold["train_images_per_second"],
            "finetune_epoch_seconds": train_images / fold["train_images_per_second"],
            "test_accuracy": fold["test"]["accuracy"]}
    results["epoch_speedup"] = (results["1_rank"]["finetune_epoch_seconds"]
                                / results["2_rank"]["finetune_epoch_seconds"])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark_ray"))
    parser.add_argument("--subjects", type=int, default=80, help="synthetic subjects of the sweep")
    parser.add_argument("--epochs", type=int, default=8, help="most epochs per incremental step")
    parser.add_argument("--basic-subjects", type=int, default=120, help="synthetic subjects of the basic phase")
    parser.add_argument("--basic-epochs", type=int, default=3, help="fine-tuning epochs of the basic phase")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"load_average_before": os.getloadavg(), "cpus": os.cpu_count()}
    report["sweep"] = sweep(args.out, args.subjects, args.epochs)
    report["basic_phase"] = basic_epochs(args.out, args.basic_subjects, args.basic_epochs)
    report["load_average_after"] = os.getloadavg()
    write_json(args.out / "benchmark_ray.json", report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
