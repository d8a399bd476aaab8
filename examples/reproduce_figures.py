"""Regenerates the README's figures, writes them to ``docs/figures.json`` and the README from it.

    python examples/reproduce_figures.py --quick            # minutes: the default run and inference speed
    python examples/reproduce_figures.py --full             # hours, resumable: every other figure
    python examples/reproduce_figures.py --part compare --ray auto
    python examples/reproduce_figures.py --check            # CI: rerun the deterministic part, compare

Each **part** is one or more commands (the ones the README names beside its figures) run in
``--work`` (default ``runs/figures/<part>``), and an extractor that reads their result files into
figures: short values (``"47.6"``) and Markdown tables. A finished part is recorded in
``docs/figures.json`` with the commit and the machine that produced it, the command, the wall time
and the peak memory; the README is then rewritten from that file. In the README a figure stands
between two invisible markers, ``<!--fig:default_run.overall_accuracy-->47.6<!--/fig-->``, and
``<!--fig:PART.stamp-->`` marks where the part's provenance line goes. A part's commands resume
(every cfer command does), so an interrupted ``--full`` run goes on where it stopped.

``--check`` reruns the quick deterministic part (the default run: deterministic on the CPU) in a
fresh folder and fails (exit 1) when any of its checked figures differs from ``docs/figures.json``,
or when the README is not what ``docs/figures.json`` renders; timings are recorded, never checked.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfer.io import atomic_write_text, write_json

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures.json"
README = ROOT / "README.md"
MARKER = re.compile(r"<!--fig:(?P<key>[\w.-]+)-->(?P<body>.*?)<!--/fig-->", re.DOTALL)
CODE_PATHS = ("cfer", "strategies", "configs", "examples", "pyproject.toml")

Figures = dict[str, str]


@dataclass(frozen=True)
class Part:
    """One group of README figures: the commands that make them and how to read them back.

    Attributes:
        name: Key in ``docs/figures.json`` and prefix of its README markers.
        commands: Given the part's work folder, the command lines to run (argv lists), in order.
        extract: Given the work folder, the figures by key.
        quick: In ``--quick`` (minutes) rather than only in ``--full`` (hours).
        checked: Keys that are deterministic on the CPU, so ``--check`` compares them.
        ray: The commands take ``--ray ADDRESS`` (a sweep of independent runs).
    """

    name: str
    commands: Callable[[Path], list[list[str]]]
    extract: Callable[[Path], Figures]
    quick: bool = False
    checked: tuple[str, ...] = ()
    ray: bool = False


# --- formatting -------------------------------------------------------------------------------------

def percent(value: float | None, digits: int = 1) -> str:
    """``0.4762 -> "47.6"``; the README's unit is said beside the marker."""
    return "–" if value is None else f"{100 * value:.{digits}f}"


def signed_percent(value: float) -> str:
    """``-0.0594 -> "−5.9"``, with the typographic minus the README uses."""
    return f"{100 * value:+.1f}".replace("-", "−")


def minutes(seconds: float) -> str:
    """``287 -> "4 min 47 s"``."""
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60} s" if whole >= 60 else f"{whole} s"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def markdown_tables(path: Path) -> list[str]:
    """Every Markdown table of a file that a cfer command wrote, in order."""
    tables, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append("\n".join(current))
            current = []
    return tables + (["\n".join(current)] if current else [])


def tables_of(path: Path, prefix: str = "table") -> Figures:
    return {f"{prefix}_{index}": table for index, table in enumerate(markdown_tables(path))}


def f1_extremes(per_class: Mapping[str, Mapping[str, float]]) -> Figures:
    """The weakest and the strongest class by F1: ``{"weakest_f1": "0.72 for sad", ...}``."""
    ranked = sorted(per_class, key=lambda name: per_class[name]["f1"])
    return {"weakest_f1": f"{per_class[ranked[0]]['f1']:.2f} for {ranked[0]}",
            "strongest_f1": f"{per_class[ranked[-1]]['f1']:.2f} for {ranked[-1]}"}


# --- the parts ---------------------------------------------------------------------------------------

def default_run_figures(work: Path) -> Figures:
    """The README's default-run paragraph and step table, from ``cfer train-incremental``'s results."""
    results = json.loads((work / "incremental" / "results.json").read_text(encoding="utf-8"))
    cfer = results["strategies"]["cfer"]["aggregate"]
    steps = cfer["step_accuracy_mean"]
    basic = results["basic"]
    extremes = f1_extremes(basic["best_fold_test"]["per_class"])
    return {
        "basic_test_accuracy": f"{basic['best_fold_test']['accuracy']:.3f}",
        "basic_chance": f"{1 / len(basic['classes']):.3f}",
        **{f"basic_{key}": value for key, value in extremes.items()},
        "test_subjects": str(len(results["subjects"]["test"])),
        "overall_accuracy": percent(cfer["overall_accuracy"]),
        "macro_f1": percent(cfer["average_macro_f1"]["mean"]),
        "final_accuracy": percent(cfer["final_accuracy"]["mean"]),
        "final_basic": percent(cfer["final_basic_accuracy"]["mean"]),
        "final_compound": percent(cfer["final_compound_accuracy"]["mean"]),
        "forgetting": percent(cfer["average_forgetting"]["mean"]),
        "bwt": signed_percent(cfer["backward_transfer"]["mean"]),
        "steps": markdown_table(["step", *map(str, range(len(steps)))],
                                [["accuracy (%)", *(percent(value) for value in steps)]]),
        # timings: recorded with the machine, never checked
        "basic_seconds": f"{basic['wall_seconds']:.0f}",
        "steps_seconds": f"{cfer['wall_seconds']['mean']:.0f}",
        "step_seconds": f"{cfer['step_seconds']['mean']:.1f}",
    }


_DEFAULT_CHECKED = ("basic_test_accuracy", "basic_chance", "basic_weakest_f1", "basic_strongest_f1", "test_subjects",
                    "overall_accuracy", "macro_f1", "final_accuracy", "final_basic", "final_compound", "forgetting",
                    "bwt", "steps")


def basic_figures(work: Path) -> Figures:
    """The basic phase's paragraph, from ``cfer train-basic --fold 0``'s metrics."""
    fold = json.loads((work / "basic" / "fold_0" / "metrics.json").read_text(encoding="utf-8"))
    return {"test_accuracy": f"{fold['test']['accuracy']:.3f}", **f1_extremes(fold["test"]["per_class"]),
            "fold_seconds": f"{fold['seconds']:.0f}"}


def faces_figures(work: Path) -> Figures:
    """The detector's paragraph, from ``examples/benchmark_faces.py``'s JSON."""
    results = json.loads((work / "faces.json").read_text(encoding="utf-8"))
    after = max(abs(angle["after"]) for angle in results["eye_angle_degrees"].values())
    before = max(abs(angle["before"]) for angle in results["eye_angle_degrees"].values())
    return {"astronaut_faces_per_second": f"{results['astronaut_faces_per_second']:.1f}",
            "lfw_faces_per_second": f"{results['lfw_faces_per_second']:.0f}",
            "lfw_faces_found": f"{round(100 * results['lfw_faces_found'])}",
            "lfw_non_faces_detected": f"{round(100 * results['lfw_non_faces_detected'])}",
            "eye_angle_after": f"{after:.1f}", "eye_angle_before": f"{before:.0f}"}


def own_script_figures(work: Path) -> Figures:
    """``examples/own_avalanche_script.py``'s final accuracies, from what it prints."""
    words = (work / "stdout_0.txt").read_text(encoding="utf-8").split()
    return {"cfer": words[words.index("cfer") + 1], "naive": words[words.index("naive") + 1]}


_RUNTIMES = {"pytorch": "PyTorch eager", "torchscript": "TorchScript", "onnxruntime": "ONNX Runtime"}
_STAGES = {"decode_ms": "decode (OpenCV)", "detect_640px_ms": "MTCNN detection at 640 px",
           "detect_320px_ms": "MTCNN detection at 320 px", "follow_ms": "ONet following one face",
           "crop_ms": "alignment and crop", "classify_ms": "classifier, batch 1"}


def inference_figures(work: Path) -> Figures:
    """The three speed tables of "Use a trained model", from ``examples/benchmark_inference.py``'s JSON."""
    results = json.loads((work / "inference.json").read_text(encoding="utf-8"))
    classifier = results["classifier"]
    rows = [[size.replace("px", " px"), _RUNTIMES[runtime], f"{row['median_ms']:.1f}", f"{row['p95_ms']:.1f}",
             f"{row['batch32_images_per_s']:.0f}"] for size, table in classifier.items() for runtime, row in table.items()]
    stages = results["stages"]
    stage_rows = [[_STAGES.get(stage, stage), *(f"{costs[stage]:.1f}" for costs in stages.values())]
                  for stage in stages["pytorch"]]
    settings = dict.fromkeys(name.rsplit(" (", 1)[0] for name in results["end_to_end"])
    pipeline = [[name, *(f"{results['end_to_end'][f'{name} ({backend})']['frames_per_s']:.1f}" for backend in stages)]
                for name in settings]
    small, large = (classifier[size] for size in classifier)
    default = pipeline[-1]
    return {
        "classifier": markdown_table(["input", "runtime", "batch 1 median (ms)", "batch 1 p95 (ms)",
                                      "batch 32 (images/s)"], rows),
        "stages": markdown_table(["one 640 × 480 frame (ms)", *(f"with {_RUNTIMES[name]}" for name in stages)],
                                 stage_rows),
        "end_to_end": markdown_table(["end to end on a 640 × 480 video, one face",
                                      *(f"{_RUNTIMES[name]} (frames/s)" for name in stages)], pipeline),
        "onnx_speedup_small": f"{small['pytorch']['median_ms'] / small['onnxruntime']['median_ms']:.1f}",
        "onnx_speedup_large": f"{large['pytorch']['median_ms'] / large['onnxruntime']['median_ms']:.1f}",
        "default_fps_pytorch": default[1], "default_fps_onnx": default[2],
        "detect_320_ms": f"{stages['pytorch']['detect_320px_ms']:.0f}",
        "detect_640_ms": f"{stages['pytorch']['detect_640px_ms']:.0f}",
        "follow_ms": f"{stages['pytorch']['follow_ms']:.0f}",
    }


def orders_figures(work: Path) -> Figures:
    """The paper's protocol over 10 orders, on the default run's basic phase."""
    cfer = json.loads((work / "incremental" / "results.json").read_text(encoding="utf-8"))["strategies"]["cfer"]
    aggregate = cfer["aggregate"]
    return {
        "overall_accuracy": f"{percent(aggregate['overall_accuracy'])} ± {percent(aggregate['overall_accuracy_std'])}",
        "macro_f1": f"{percent(aggregate['average_macro_f1']['mean'])} ± {percent(aggregate['average_macro_f1']['std'])}",
        "final_accuracy": f"{percent(aggregate['final_accuracy']['mean'])} ± {percent(aggregate['final_accuracy']['std'])}",
        "step_seconds": f"{aggregate['step_seconds']['mean']:.1f}",
    }


def ray_figures(work: Path) -> Figures:
    """"Beyond one machine", from ``examples/benchmark_ray.py``'s JSON."""
    results = json.loads((work / "benchmark_ray.json").read_text(encoding="utf-8"))
    sweep, basic = results["sweep"], results["basic_phase"]
    return {"in_process_seconds": f"{sweep['in_process']['wall_seconds']:.0f}",
            "ray_seconds": f"{sweep['ray_local']['wall_seconds']:.0f}", "speedup": f"{sweep['speedup']:.2f}",
            "same_metrics": "the same" if sweep["same_metrics"] else "different",
            "in_process_mib": f"{sweep['in_process']['peak_rss_mib'] or 0:.0f}",
            "ray_mib": f"{sweep['ray_local']['peak_rss_mib'] or 0:.0f}",
            "epoch_1_rank": f"{basic['1_rank']['finetune_epoch_seconds']:.1f}",
            "epoch_2_rank": f"{basic['2_rank']['finetune_epoch_seconds']:.1f}",
            "epoch_speedup": f"{basic['epoch_speedup']:.2f}",
            "accuracy_1_rank": f"{basic['1_rank']['test_accuracy']:.3f}",
            "accuracy_2_rank": f"{basic['2_rank']['test_accuracy']:.3f}"}


def cfer(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "cfer", *arguments]


def example(script: str, *arguments: str) -> list[str]:
    return [sys.executable, str(ROOT / "examples" / script), *arguments]


_COMPARE = ("--tested", "cfer,ncm,ranpac", "--others", "cfer-no-kd,cfer-random-memory,cfer-wa,cfer-ncm,cfer-ridge,"
            "cfer-fresh-optimizer,replay-balanced,replay,naive,lwf,ewc,gdumb,joint,icarl", "--seeds", "1,2,3",
            "--orders", "10", "--other-orders", "1")

PARTS: dict[str, Part] = {part.name: part for part in (
    Part("default_run", lambda work: [cfer("train-incremental", "--out", str(work / "incremental"))],
         default_run_figures, quick=True, checked=_DEFAULT_CHECKED),
    Part("basic", lambda work: [cfer("train-basic", "--fold", "0", "--out", str(work / "basic"))], basic_figures,
         quick=True, checked=("test_accuracy", "weakest_f1", "strongest_f1")),
    Part("faces", lambda work: [example("benchmark_faces.py", "--threads", "2", "--out", str(work / "faces.json"))],
         faces_figures, quick=True, checked=("lfw_faces_found", "lfw_non_faces_detected", "eye_angle_after",
                                             "eye_angle_before")),
    Part("own_script", lambda work: [example("own_avalanche_script.py")], own_script_figures, quick=True,
         checked=("cfer", "naive")),
    Part("inference", lambda work: [example("benchmark_inference.py", "--threads", "2", "--frames", "100",
                                            "--repeats", "50", "--out", str(work / "inference.json"))],
         inference_figures, quick=True),
    Part("orders", lambda work: [cfer("train-incremental", "--orders", "10", "--out", str(work / "incremental"))],
         orders_figures, ray=True),
    Part("compare", lambda work: [cfer("compare", *_COMPARE, "--out", str(work))],
         lambda work: tables_of(work / "comparison.md"), ray=True),
    Part("fewshot", lambda work: [example("fewshot_eval.py", "--out", str(work))],
         lambda work: tables_of(work / "results.md")),
    Part("distill", lambda work: [cfer("distill", "--out", str(work))], lambda work: tables_of(work / "results.md")),
    Part("ray", lambda work: [example("benchmark_ray.py", "--out", str(work))], ray_figures),
    Part("difficulty", lambda work: [example("synthetic_difficulty.py", "--out", str(work / "difficulty.json"))],
         lambda work: {"results": (work / "difficulty.json").read_text(encoding="utf-8")}),
)}


# --- provenance -------------------------------------------------------------------------------------

def commit() -> str:
    """HEAD's short hash, with ``+changes`` when the code (not the docs) differs from it."""
    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--", *CODE_PATHS) else "")


def machine() -> str:
    """One line a reader can compare with their own machine."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import torch  # noqa: PLC0415 - the version only, and only when a part ran

    return (f"{len(os.sched_getaffinity(0))} cores of {cpu} ({cpu_kernels()} kernels), {memory:.0f} GiB, "
            f"{platform.system()}, Python {platform.python_version()}, torch {torch.__version__}")


def cpu_kernels() -> str:
    """The vector instruction set torch's CPU kernels use here (``AVX2``, ``AVX512``, ...).

    Training is deterministic on one kernel set, but the float sums differ between sets, so a run's
    figures are exact only on a machine whose kernels are those of the machine that measured them.
    """
    import torch  # noqa: PLC0415

    return torch.backends.cpu.get_cpu_capability()


def stamp(record: Mapping[str, Any]) -> str:
    """The provenance line the README shows beside a part's figures."""
    commands = "; ".join(f"`{command}`" for command in record["commands"])
    return (f"measured at commit {record['commit']} on {record['machine']} (load average {record['load_average']:.1f} "
            f"at the start), {record['date']}, by {commands}: {minutes(record['wall_seconds'])} wall, "
            f"peak resident memory {record['peak_memory_gb']:.1f} GB")


def display(command: list[str], work: Path) -> str:
    """A command as a user types it: ``cfer ...`` and ``python examples/...``, the work folder shortened."""
    words = ["cfer" if word == "-m" else word for word in command[1:] if word != "cfer"] if command[1] == "-m" \
        else ["python", *command[1:]]
    text = " ".join(shlex.quote(word) for word in words)
    return text.replace(str(ROOT) + "/", "").replace(str(work), f"runs/figures/{work.name}")


# --- running ----------------------------------------------------------------------------------------

def run_part(part: Part, work: Path, ray: str | None = None) -> dict[str, Any]:
    """Runs a part's commands (each resumes what it finds in ``work``) and reads its figures.

    Returns:
        The part's record: figures, commands, commit, machine, date, wall time and peak memory.

    Raises:
        RuntimeError: A command failed; its exit status and command line are in the message.
    """
    work.mkdir(parents=True, exist_ok=True)
    load, start = os.getloadavg()[0], time.perf_counter()
    commands = part.commands(work)
    if ray is not None and part.ray:
        commands = [command + ["--ray", ray] for command in commands]
    peak = 0.0
    for index, command in enumerate(commands):
        print(f"[{part.name}] {display(command, work)}", flush=True)
        status, usage = _run(command, work / f"stdout_{index}.txt")
        peak = max(peak, usage.ru_maxrss / 2**20)  # KiB -> GiB
        if status != 0:
            raise RuntimeError(f"part {part.name}: `{display(command, work)}` exited with status {status}; "
                               "fix it and run the same command again: finished work is reused")
    return {"figures": part.extract(work), "checked": list(part.checked),
            "commands": [display(command, work) for command in commands], "commit": commit(), "machine": machine(),
            "cpu_kernels": cpu_kernels(),
            "date": datetime.date.today().isoformat(), "load_average": load,
            "wall_seconds": time.perf_counter() - start, "peak_memory_gb": peak}


def _run(command: list[str], transcript: Path) -> tuple[int, resource.struct_rusage]:
    """Runs a command in the checkout, its standard output copied to ``transcript``.

    Returns:
        Its exit status and its own resource usage (peak memory).
    """
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    with transcript.open("w", encoding="utf-8") as file:
        for line in process.stdout:
            sys.stdout.write(line)
            file.write(line)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage


def load_figures(path: Path = FIGURES) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def save_figures(figures: Mapping[str, Any], path: Path = FIGURES) -> None:
    write_json(path, dict(sorted(figures.items())))


# --- the README -------------------------------------------------------------------------------------

def lookup(figures: Mapping[str, Any], key: str) -> str | None:
    """The text of ``PART.KEY`` (``PART.stamp`` is the provenance line), or None if not measured."""
    part, _, name = key.partition(".")
    record = figures.get(part)
    if record is None:
        return None
    return stamp(record) if name == "stamp" else record["figures"].get(name)


def render_readme(text: str, figures: Mapping[str, Any]) -> str:
    """The README with every marked figure replaced by its value in ``figures``.

    A table (a value with line breaks) stands on lines of its own between its markers. A marker of a
    part that ``figures`` lacks keeps its text.
    """
    def replace(match: re.Match) -> str:
        value = lookup(figures, match["key"])
        if value is None:
            return match[0]
        body = f"\n{value}\n" if "\n" in value else value
        return f"<!--fig:{match['key']}-->{body}<!--/fig-->"
    return MARKER.sub(replace, text)


def unknown_markers(text: str, figures: Mapping[str, Any]) -> list[str]:
    """Markers of measured parts whose key the part does not have (a typo in the README)."""
    return [match["key"] for match in MARKER.finditer(text)
            if match["key"].partition(".")[0] in figures and lookup(figures, match["key"]) is None]


def differences(expected: Mapping[str, Any], fresh: Mapping[str, Any]) -> list[str]:
    """The checked figures of the parts in ``fresh`` that differ from ``expected``, one line each."""
    lines = []
    for name, record in fresh.items():
        stated = expected.get(name, {}).get("figures", {})
        for key in record["checked"]:
            if stated.get(key) != record["figures"][key]:
                lines.append(f"{name}.{key}: README/docs/figures.json say {stated.get(key)!r}, HEAD gives "
                             f"{record['figures'][key]!r}")
    return lines


def check(work: Path | None) -> int:
    """Reruns the checked quick parts and compares; 0 when the README states what HEAD produces."""
    figures, text = load_figures(), README.read_text(encoding="utf-8")
    problems = [f"README.md is not what docs/figures.json renders (marker {key!r} and around); run "
                "`python examples/reproduce_figures.py --readme`" for key in _stale_markers(text, figures)]
    problems += [f"README.md marks {key!r}, which docs/figures.json does not have" for key in unknown_markers(text, figures)]
    with tempfile.TemporaryDirectory(prefix="cfer-figures-") as scratch:
        fresh = {part.name: run_part(part, (work or Path(scratch)) / part.name)
                 for part in PARTS.values() if part.quick and part.checked}
    problems += differences(figures, fresh)
    measured = {figures.get(name, {}).get("cpu_kernels", "unrecorded") for name in fresh}
    if problems and measured != {cpu_kernels()}:
        problems.append(f"the figures were measured with {', '.join(sorted(measured))} CPU kernels and this machine "
                        f"runs {cpu_kernels()}: float sums differ between kernel sets, so the runs differ too; "
                        "rerun `python examples/reproduce_figures.py --quick` on a machine of the README's kind")
    for line in problems:
        print(f"figure check: {line}", file=sys.stderr)
    print(f"figure check: {'FAILED' if problems else 'passed'}: "
          f"{sum(len(record['checked']) for record in fresh.values())} figures of {', '.join(fresh)} compared")
    return 1 if problems else 0


def _stale_markers(text: str, figures: Mapping[str, Any]) -> list[str]:
    rendered = {match["key"]: match[0] for match in MARKER.finditer(render_readme(text, figures))}
    return [match["key"] for match in MARKER.finditer(text) if rendered.get(match["key"]) != match[0]]


# --- command line -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the parts that take minutes: " +
                        ", ".join(name for name, part in PARTS.items() if part.quick))
    parser.add_argument("--full", action="store_true", help="every part (hours; resumable)")
    parser.add_argument("--part", action="append", default=[], choices=sorted(PARTS), help="this part; repeatable")
    parser.add_argument("--work", type=Path, help="parent of the parts' run folders (default runs/figures)")
    parser.add_argument("--ray", metavar="ADDRESS", help="run the sweeps (orders, compare) on Ray at ADDRESS")
    parser.add_argument("--readme", action="store_true", help="only rewrite README.md from docs/figures.json")
    parser.add_argument("--check", action="store_true", help="rerun the checked parts in a fresh folder and compare")
    args = parser.parse_args(argv)
    try:
        return check(args.work) if args.check else _measure(args, parser)
    except RuntimeError as error:
        print(f"reproduce_figures: {error}", file=sys.stderr)
        return 1


def _measure(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Runs the parts asked for, records each as it finishes, and rewrites the README."""
    names = list(PARTS) if args.full else [name for name, part in PARTS.items() if part.quick] if args.quick else args.part
    if not names and not args.readme:
        parser.error("say what to run: --quick, --full, --part NAME, --readme or --check")
    work = args.work or ROOT / "runs" / "figures"
    for name in names:
        record = run_part(PARTS[name], work / name, args.ray)
        figures = load_figures()
        figures[name] = record
        save_figures(figures)  # after each part: a later failure keeps what finished
        print(f"[{name}] {stamp(record)}")
    figures = load_figures()
    text = README.read_text(encoding="utf-8")
    atomic_write_text(README, render_readme(text, figures))
    missing = unknown_markers(text, figures)
    if missing:
        print(f"README.md marks figures no part gives: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
