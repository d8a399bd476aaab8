"""The reports of ``cfer distill``: results.json, results.md and accuracy_vs_macs.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cfer.io import atomic_write_text, save_figure, write_json

__all__ = ["format_distill_summary", "write_distill_reports"]


def write_distill_reports(summary: dict[str, Any], out_dir: Path) -> None:
    """Writes the JSON summary, the Markdown table and the accuracy-against-MACs plot."""
    write_json(out_dir / "results.json", summary)
    atomic_write_text(out_dir / "results.md", format_distill_summary(summary) + "\n")
    _plot(summary, out_dir / "accuracy_vs_macs.png")


def format_distill_summary(summary: dict[str, Any]) -> str:
    """A Markdown table of every model, then the headline figures."""
    lines = ["| model | accuracy | macro-F1 | V CCC | A CCC | V RMSE | A RMSE | V SAGR | A SAGR | params (M) | MMACs "
             "| latency (ms) | images/s |", "|---|" + "---:|" * 12]
    for name, record in summary["results"].items():
        affect, cost = record["affect"], record["cost"]
        lines.append(
            f"| {name} | {100 * record['accuracy']:.1f} | {100 * record['macro_f1']:.1f} | "
            f"{affect['valence']['ccc']:.3f} | {affect['arousal']['ccc']:.3f} | {affect['valence']['rmse']:.3f} | "
            f"{affect['arousal']['rmse']:.3f} | {affect['valence']['sagr']:.2f} | {affect['arousal']['sagr']:.2f} | "
            f"{cost['parameters'] / 1e6:.2f} | {cost['macs'] / 1e6:.1f} | {cost['latency_ms']:.1f} | "
            f"{cost['images_per_second']:.0f} |")
    lines += ["", "| student vs teacher | compute ratio | accuracy kept | accuracy drop (points) |", "|---|---:|---:|---:|"]
    for name, figures in summary["headline"].items():
        lines.append(f"| {name} | {figures['compute_ratio']:.1f}x | {100 * figures['accuracy_kept']:.1f}% | "
                     f"{100 * figures['accuracy_drop']:.1f} |")
    images = summary["images"]
    lines.append(f"\nTest images {images['test']}, validation {images['val']}, training {images['train']}; "
                 f"{summary['wall_seconds']:.0f} s.")
    return "\n".join(lines)


def _plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    figure, axes = plt.subplots(figsize=(6.5, 4.2))
    for index, (name, record) in enumerate(summary["results"].items()):
        marker = "s" if name.startswith("teacher") else "*" if name == "ensemble" else "o"
        label = name.split("(")[-1].rstrip(")") if name.startswith("teacher") else name
        point = (record["cost"]["macs"] / 1e6, 100 * record["accuracy"])
        axes.scatter(*point, marker=marker, s=60)
        axes.annotate(label, point, fontsize=7, xytext=(5, 4 if index % 2 else -9), textcoords="offset points")
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.xaxis.set_minor_formatter(ScalarFormatter())
    axes.set_xlabel("MMACs per image (log scale)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("cfer distill: accuracy against computation")
    axes.grid(alpha=0.3)
    save_figure(figure, path)
