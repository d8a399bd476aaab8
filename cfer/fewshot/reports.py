"""Few-shot results as JSON, a Markdown table, a PNG of accuracy against K, and a terminal summary.

Every file is written atomically (:mod:`cfer.io`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cfer.io import atomic_write_text, save_figure, write_json

__all__ = ["fewshot_markdown", "format_fewshot_summary", "plot_accuracy_vs_shots", "write_fewshot_reports"]

_PAPER_COLUMNS = (
    ("new_class_only_accuracy", "new-class-only acc. (reference; = new-class recall)"),
    ("balanced_accuracy", "balanced acc. (basic + new)"),
    ("new_class_precision", "new-class precision"),
    ("basic_accuracy", "basic acc. retained"),
)


def _pm(entry: dict[str, float]) -> str:
    return f"{entry['mean']:.3f} ± {entry['ci95']:.3f}"


def fewshot_markdown(summary: dict[str, Any]) -> str:
    """The results as Markdown tables: paper protocol per K and per class, then episodic accuracy."""
    lines = ["# Few-shot learning of compound expressions", ""]
    paper = summary.get("paper")
    if paper:
        lines += [
            f"## Paper protocol (one compound class added to the basic model; {paper['trained_on']})",
            "",
            (f"Mean ± 95% CI over {len(paper['classes'])} classes x {summary['config']['paper']['seeds']} seeds. "
             f"Basic accuracy before adding a class: {paper['basic_accuracy_before']:.3f}; chance balanced "
             f"accuracy {paper['chance_balanced_accuracy']:.3f} (also the score of a model that always "
             "predicts the new class, which scores 1.000 on the reference's figure)."),
            "",
            "| K | " + " | ".join(title for _, title in _PAPER_COLUMNS) + " |",
            "|---" * (len(_PAPER_COLUMNS) + 1) + "|",
        ]
        for shots in paper["shots"]:
            row = paper["per_shot"][shots]
            lines.append(f"| {shots} | " + " | ".join(_pm(row[key]) for key, _ in _PAPER_COLUMNS) + " |")
        lines += ["", "Per class (mean over seeds): new-class-only accuracy / balanced accuracy", "",
                  "| class | " + " | ".join(f"K={s}" for s in paper["shots"]) + " |",
                  "|---" * (len(paper["shots"]) + 1) + "|"]
        for name, per_shot in paper["per_class"].items():
            cells = [f"{per_shot[s]['new_class_only_accuracy']:.2f} / {per_shot[s]['balanced_accuracy']:.2f}"
                     for s in paper["shots"]]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    episodic = summary.get("episodic")
    if episodic:
        settings = episodic["settings"]
        lines += [
            (f"## Episodic evaluation ({episodic['class_pool']} classes, held-out subjects, "
             f"{'subject-disjoint' if episodic['subject_disjoint'] else 'shared-subject'} support/query)"),
            "",
            (f"Accuracy, mean ± 1.96·std/√episodes over {episodic['episodes']} episodes per setting; "
             f"{episodic['n_query']} queries per class."),
            "",
            "| backbone | classifier | " + " | ".join(settings) + " |",
            "|---|---" + "|---" * len(settings) + "|",
        ]
        for backbone, per_classifier in episodic["results"].items():
            for classifier, per_setting in per_classifier.items():
                lines.append(f"| {backbone} | {classifier} | " + " | ".join(_pm(per_setting[s]) for s in settings) + " |")
        if episodic.get("backbones_identical"):
            lines += ["", ("**The basic-phase backbone is the ImageNet one** (its fine-tuning stage never beat the "
                           "head stage on validation loss), so the two rows coincide and say nothing about transfer.")]
        lines += ["", "Gain of the basic-phase backbone over the ImageNet one (accuracy points):", ""]
        for classifier, per_setting in episodic["basic_minus_imagenet"].items():
            lines.append(f"- {classifier}: " + ", ".join(f"{s} {d:+.3f}" for s, d in per_setting.items()))
        lines.append("")
    lines.append(f"Wall time {summary['wall_seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_shots(summary: dict[str, Any], path: str | Path) -> Path:
    """Saves a PNG: the paper protocol's figures against K, and episodic accuracy against K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    paper, episodic = summary.get("paper"), summary.get("episodic")
    if paper:
        x = range(len(paper["shots"]))
        for key, title in _PAPER_COLUMNS:
            rows = [paper["per_shot"][s][key] for s in paper["shots"]]
            axes[0].errorbar(x, [r["mean"] for r in rows], yerr=[r["ci95"] for r in rows], marker="o", capsize=3,
                             label=title)
        axes[0].axhline(paper["chance_balanced_accuracy"], color="grey", linestyle=":", label="chance (balanced)")
        axes[0].set_xticks(list(x), paper["shots"])
        axes[0].set_title("paper protocol: one compound class added")
        axes[0].legend(fontsize=7)
    if episodic:
        shots = episodic["shots"]
        for backbone, per_classifier in episodic["results"].items():
            for classifier, per_setting in per_classifier.items():
                rows = [per_setting[s] for s in episodic["settings"]]
                axes[1].errorbar(shots, [r["mean"] for r in rows], yerr=[r["ci95"] for r in rows], marker="o",
                                 capsize=3, label=f"{backbone} / {classifier}")
        axes[1].axhline(1.0 / episodic["n_way"], color="grey", linestyle=":", label="chance")
        axes[1].set_xticks(shots)
        axes[1].set_title(f"{episodic['n_way']}-way episodes ({episodic['class_pool']} classes)")
        axes[1].legend(fontsize=7)
    for axis in axes:
        axis.set_xlabel("shots per class (K)")
        axis.set_ylabel("accuracy")
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
    return save_figure(figure, path)


def write_fewshot_reports(summary: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Writes ``results.json``, ``results.md`` and ``accuracy_vs_shots.png`` into ``out_dir``.

    Returns:
        The paths written, by kind (``json``, ``markdown``, ``png``).
    """
    out_dir = Path(out_dir)
    return {
        "json": write_json(out_dir / "results.json", summary),
        "markdown": atomic_write_text(out_dir / "results.md", fewshot_markdown(summary)),
        "png": plot_accuracy_vs_shots(summary, out_dir / "accuracy_vs_shots.png"),
    }


def format_fewshot_summary(summary: dict[str, Any]) -> str:
    """The one-screen text summary of a ``cfer fewshot`` run.

    Args:
        summary: What :func:`cfer.fewshot.runner.run_fewshot` returns.

    Returns:
        Lines of text, no trailing newline.
    """
    lines = []
    paper = summary.get("paper")
    if paper:
        lines.append(f"paper protocol ({len(paper['classes'])} compound classes x {summary['config']['paper']['seeds']} "
                     f"seeds; basic accuracy before: {paper['basic_accuracy_before']:.3f}, chance balanced "
                     f"{paper['chance_balanced_accuracy']:.3f}):")
        for shots in paper["shots"]:
            row = paper["per_shot"][shots]
            lines.append(f"  K={shots:>3}: new-class-only (reference) {_pm(row['new_class_only_accuracy'])}  "
                         f"balanced {_pm(row['balanced_accuracy'])}  basic retained {_pm(row['basic_accuracy'])}")
    episodic = summary.get("episodic")
    if episodic:
        lines.append(f"episodic ({episodic['class_pool']} classes, {episodic['episodes']} episodes, held-out subjects):")
        for backbone, per_classifier in episodic["results"].items():
            for classifier, per_setting in per_classifier.items():
                cells = "  ".join(f"{s} {_pm(v)}" for s, v in per_setting.items())
                lines.append(f"  {backbone:>8} / {classifier:<9}: {cells}")
        if episodic.get("backbones_identical"):
            lines.append("  warning: the basic-phase backbone equals the ImageNet one; the comparison is void")
        for classifier, per_setting in episodic["basic_minus_imagenet"].items():
            lines.append(f"  basic - imagenet ({classifier}): "
                         + ", ".join(f"{s} {d:+.3f}" for s, d in per_setting.items()))
    lines.append(f"wall time {summary['wall_seconds']:.0f} s; results.json, results.md, accuracy_vs_shots.png "
                 f"in {summary['out_dir']}/")
    return "\n".join(lines)
