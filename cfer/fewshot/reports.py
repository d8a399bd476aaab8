"""Few-shot results as JSON, Markdown tables, two PNGs and a terminal summary.

* ``accuracy_vs_session.png``: FSCIL, accuracy over all classes seen against the number of classes
  seen, one line per method (mean ± 95% CI over runs), the full-data continual references dashed;
* ``accuracy_vs_shots.png``: the paper's protocol per method against K, and episodic accuracy.

Every file is written atomically (:mod:`cfer.io`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cfer.io import atomic_write_text, save_figure, write_json

__all__ = [
    "fewshot_markdown",
    "format_fewshot_summary",
    "plot_accuracy_vs_session",
    "plot_accuracy_vs_shots",
    "write_fewshot_reports",
]

_PAPER_COLUMNS = (
    ("new_class_only_accuracy", "new-class-only acc. (reference; = new-class recall)"),
    ("balanced_accuracy", "balanced acc. (basic + new)"),
    ("new_class_precision", "new-class precision"),
    ("basic_accuracy", "basic acc. retained"),
)

_FSCIL_COLUMNS = (
    ("final_accuracy", "final acc. (all classes)"),
    ("final_base_accuracy", "final base"),
    ("final_novel_accuracy", "final novel"),
    ("final_harmonic_mean", "final harmonic mean"),
    ("performance_drop", "drop (first − last)"),
    ("average_accuracy", "average acc. over sessions"),
)


def _pm(entry: dict[str, float] | None, scale: float = 1.0, digits: int = 3) -> str:
    if entry is None:
        return "–"
    return f"{scale * entry['mean']:.{digits}f} ± {scale * entry['ci95']:.{digits}f}"


def _table_shot(shots: list[str]) -> str:
    """The K of the per-class table: 5 when run (the issue's setting), else the last."""
    return "5" if "5" in shots else shots[-1]


def _paper_markdown(summary: dict[str, Any]) -> list[str]:
    paper = summary["paper"]
    seeds = summary["config"]["paper"]["seeds"]
    lines = [
        f"## Paper protocol (one compound class added to the basic model; {paper['trained_on']})",
        "",
        (f"Mean ± 95% CI over {len(paper['classes'])} classes x {seeds} seeds, on {summary['evaluated_on']} subjects. "
         f"The basic model's accuracy on the basic classes: {paper['basic_accuracy_before']:.3f}; chance balanced "
         f"accuracy {paper['chance_balanced_accuracy']:.3f} (also the score of a model that always predicts the new "
         "class, which scores 1.000 on the reference's figure). 'before' is each method's basic accuracy before it "
         "adds a class."),
        "",
        "| method | K | " + " | ".join(title for _, title in _PAPER_COLUMNS) + " | before |",
        "|---|---" + "|---" * len(_PAPER_COLUMNS) + "|---|",
    ]
    for method, result in paper["methods"].items():
        for shots in paper["shots"]:
            row = result["per_shot"][shots]
            lines.append(f"| `{method}` | {shots} | " + " | ".join(_pm(row[key]) for key, _ in _PAPER_COLUMNS)
                         + f" | {result['basic_accuracy_before']:.3f} |")
    shots = _table_shot(paper["shots"])
    methods = list(paper["methods"])
    lines += ["", f"Per class at K={shots} (mean over seeds): new-class-only accuracy / balanced accuracy", "",
              "| class | " + " | ".join(f"`{m}`" for m in methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for name in paper["classes"]:
        cells = [f"{paper['methods'][m]['per_class'][name][shots]['new_class_only_accuracy']:.2f} / "
                 f"{paper['methods'][m]['per_class'][name][shots]['balanced_accuracy']:.2f}" for m in methods]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _fscil_markdown(summary: dict[str, Any]) -> list[str]:
    fscil = summary["fscil"]
    sessions = len(next(iter(fscil["methods"].values()))["per_shot"][fscil["shots"][0]]["summary"]["per_session"]) - 1
    lines = [
        f"## Few-shot class-incremental sessions ({sessions} sessions of {fscil['n_way']} compound class(es))",
        "",
        (f"Base session: the {fscil['num_base']} basic classes (the basic model's training images). Accuracy in % "
         f"on {summary['evaluated_on']} subjects over every class seen; base / novel: mean recall of the basic "
         f"classes / of the compound classes seen; mean ± 95% CI over {fscil['orders']} orders x {fscil['seeds']} "
         "shot seeds. Full-data continual runs (all training images of each class) are the upper reference."),
        "",
        "| method | K | " + " | ".join(title for _, title in _FSCIL_COLUMNS) + " |",
        "|---|---" + "|---" * len(_FSCIL_COLUMNS) + "|",
    ]
    for method, result in fscil["methods"].items():
        for shots in fscil["shots"]:
            row = result["per_shot"][shots]["summary"]
            lines.append(f"| `{method}` | {shots} | " + " | ".join(_pm(row[key], 100, 1) for key, _ in _FSCIL_COLUMNS)
                         + " |")
    for reference in fscil["references"]:
        steps = reference["step_accuracy"]
        cells = [reference["final_accuracy"], reference["final_basic_accuracy"], reference["final_compound_accuracy"],
                 reference["final_harmonic_mean"], steps[0] - steps[-1], reference["average_accuracy"]]
        same = {True: "", False: ", other test subjects", None: ""}[reference["same_test_subjects"]]
        lines.append(f"| `{reference['strategy']}` (continual, full data; {reference['runs']} run(s){same}) | all | "
                     + " | ".join(f"{100 * v:.1f}" for v in cells) + " |")
    for shots in fscil["shots"]:
        lines += ["", f"Accuracy (%) after each session, K={shots}:", "",
                  "| session | classes | " + " | ".join(f"`{m}`" for m in fscil["methods"]) + " |",
                  "|---|---" + "|---" * len(fscil["methods"]) + "|"]
        for index in range(sessions + 1):
            cells = [_pm(result["per_shot"][shots]["summary"]["per_session"][index]["accuracy"], 100, 1)
                     for result in fscil["methods"].values()]
            lines.append(f"| {index} | {fscil['num_base'] + index * fscil['n_way']} | " + " | ".join(cells) + " |")
    return lines + [""]


def _episodic_markdown(summary: dict[str, Any]) -> list[str]:
    episodic = summary["episodic"]
    settings = episodic["settings"]
    lines = [
        (f"## Episodic evaluation ({episodic['class_pool']} classes, {summary['evaluated_on']} subjects, "
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
    return lines + [""]


def fewshot_markdown(summary: dict[str, Any]) -> str:
    """The results as Markdown tables: FSCIL, the paper protocol per method and K, then episodic accuracy."""
    lines = ["# Few-shot learning of compound expressions", ""]
    if summary.get("fscil"):
        lines += _fscil_markdown(summary)
    if summary.get("paper"):
        lines += _paper_markdown(summary)
    if summary.get("episodic"):
        lines += _episodic_markdown(summary)
    lines.append(f"Wall time {summary['wall_seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


def _pyplot():  # matplotlib.pyplot, imported on first use
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_vs_session(summary: dict[str, Any], path: str | Path) -> Path:
    """Saves a PNG per FSCIL run: accuracy over all classes seen against classes seen, one line per method.

    One panel per K; each method's mean with its 95% band over runs, each full-data continual reference
    as a dashed line (its step ``i`` has ``num_base + i`` classes).
    """
    plt = _pyplot()
    fscil = summary["fscil"]
    figure, axes = plt.subplots(1, len(fscil["shots"]), figsize=(6.5 * len(fscil["shots"]), 4.5), squeeze=False)
    for axis, shots in zip(axes[0], fscil["shots"]):
        for method, result in fscil["methods"].items():
            rows = [s["accuracy"] for s in result["per_shot"][shots]["summary"]["per_session"]]
            x = [fscil["num_base"] + i * fscil["n_way"] for i in range(len(rows))]
            mean = [r["mean"] for r in rows]
            axis.plot(x, mean, marker="o", markersize=3, label=method)
            axis.fill_between(x, [m - r["ci95"] for m, r in zip(mean, rows)], [m + r["ci95"] for m, r in zip(mean, rows)],
                              alpha=0.15)
        for reference in fscil["references"]:
            steps = reference["step_accuracy"]
            axis.plot([fscil["num_base"] + i for i in range(len(steps))], steps, linestyle="--", color="grey" if
                      reference["strategy"] == "cfer" else None, label=f"{reference['strategy']} (continual, full data)")
        axis.set_title(f"FSCIL: {fscil['n_way']} class(es) per session, K={shots}")
        axis.set_xlabel("classes seen")
        axis.set_ylabel(f"accuracy over all classes seen ({summary['evaluated_on']} subjects)")
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    return save_figure(figure, path)


def plot_accuracy_vs_shots(summary: dict[str, Any], path: str | Path) -> Path:
    """Saves a PNG: the paper protocol's balanced accuracy, new-class recall and retained basic accuracy
    against K per method, and episodic accuracy against K."""
    plt = _pyplot()
    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    paper, episodic = summary.get("paper"), summary.get("episodic")
    panels = (("balanced_accuracy", "balanced accuracy (basic + new)"),
              ("new_class_recall", "new-class recall (= the reference's figure)"),
              ("basic_accuracy", "basic accuracy retained"))
    for axis, (key, title) in zip(axes.flat, panels):
        if not paper:
            axis.set_visible(False)
            continue
        x = range(len(paper["shots"]))
        for method, result in paper["methods"].items():
            rows = [result["per_shot"][s][key] for s in paper["shots"]]
            axis.errorbar(x, [r["mean"] for r in rows], yerr=[r["ci95"] for r in rows], marker="o", capsize=3,
                          label=method)
        if key == "balanced_accuracy":
            axis.axhline(paper["chance_balanced_accuracy"], color="grey", linestyle=":", label="chance")
        if key == "basic_accuracy":
            axis.axhline(paper["basic_accuracy_before"], color="grey", linestyle="--", label="basic model")
        axis.set_xticks(list(x), paper["shots"])
        axis.set_title(f"paper protocol: {title}", fontsize=9)
        axis.legend(fontsize=7)
    axis = axes.flat[3]
    if episodic:
        shots = episodic["shots"]
        for backbone, per_classifier in episodic["results"].items():
            for classifier, per_setting in per_classifier.items():
                rows = [per_setting[s] for s in episodic["settings"]]
                axis.errorbar(shots, [r["mean"] for r in rows], yerr=[r["ci95"] for r in rows], marker="o",
                              capsize=3, label=f"{backbone} / {classifier}")
        axis.axhline(1.0 / episodic["n_way"], color="grey", linestyle=":", label="chance")
        axis.set_xticks(shots)
        axis.set_title(f"{episodic['n_way']}-way episodes ({episodic['class_pool']} classes)", fontsize=9)
        axis.legend(fontsize=7)
    else:
        axis.set_visible(False)
    for axis in axes.flat:
        axis.set_xlabel("shots per class (K)")
        axis.set_ylabel("accuracy")
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return save_figure(figure, path)


def write_fewshot_reports(summary: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Writes ``results.json``, ``results.md`` and the plots of the protocols that ran into ``out_dir``.

    Returns:
        The paths written, by kind (``json``, ``markdown``, ``sessions_png``, ``shots_png``).
    """
    out_dir = Path(out_dir)
    written = {
        "json": write_json(out_dir / "results.json", summary),
        "markdown": atomic_write_text(out_dir / "results.md", fewshot_markdown(summary)),
    }
    if summary.get("fscil"):
        written["sessions_png"] = plot_accuracy_vs_session(summary, out_dir / "accuracy_vs_session.png")
    if summary.get("paper") or summary.get("episodic"):
        written["shots_png"] = plot_accuracy_vs_shots(summary, out_dir / "accuracy_vs_shots.png")
    return written


def format_fewshot_summary(summary: dict[str, Any]) -> str:
    """The one-screen text summary of a ``cfer fewshot`` run.

    Args:
        summary: What :func:`cfer.fewshot.runner.run_fewshot` returns.

    Returns:
        Lines of text, no trailing newline.
    """
    lines = []
    fscil = summary.get("fscil")
    if fscil:
        lines.append(f"FSCIL ({fscil['n_way']} class(es) per session, {fscil['orders']} orders x {fscil['seeds']} "
                     f"seeds, {summary['evaluated_on']} subjects):")
        for method, result in fscil["methods"].items():
            for shots, entry in result["per_shot"].items():
                row = entry["summary"]
                lines.append(f"  {method:<13} K={shots}: final {_pm(row['final_accuracy'])}  harmonic mean "
                             f"{_pm(row['final_harmonic_mean'])}  drop {_pm(row['performance_drop'])}")
        for reference in fscil["references"]:
            lines.append(f"  {reference['strategy'] + ' (full data)':<20}: final {reference['final_accuracy']:.3f}  "
                         f"harmonic mean {reference['final_harmonic_mean']:.3f}")
    paper = summary.get("paper")
    if paper:
        lines.append(f"paper protocol ({len(paper['classes'])} compound classes x {summary['config']['paper']['seeds']} "
                     f"seeds; basic accuracy before: {paper['basic_accuracy_before']:.3f}, chance balanced "
                     f"{paper['chance_balanced_accuracy']:.3f}):")
        for method, result in paper["methods"].items():
            for shots in paper["shots"]:
                row = result["per_shot"][shots]
                lines.append(f"  {method:<13} K={shots:>3}: new-class-only (reference) {_pm(row['new_class_only_accuracy'])}"
                             f"  balanced {_pm(row['balanced_accuracy'])}  basic retained {_pm(row['basic_accuracy'])}")
    episodic = summary.get("episodic")
    if episodic:
        lines.append(f"episodic ({episodic['class_pool']} classes, {episodic['episodes']} episodes, "
                     f"{summary['evaluated_on']} subjects):")
        for backbone, per_classifier in episodic["results"].items():
            for classifier, per_setting in per_classifier.items():
                cells = "  ".join(f"{s} {_pm(v)}" for s, v in per_setting.items())
                lines.append(f"  {backbone:>8} / {classifier:<9}: {cells}")
        if episodic.get("backbones_identical"):
            lines.append("  warning: the basic-phase backbone equals the ImageNet one; the comparison is void")
        for classifier, per_setting in episodic["basic_minus_imagenet"].items():
            lines.append(f"  basic - imagenet ({classifier}): "
                         + ", ".join(f"{s} {d:+.3f}" for s, d in per_setting.items()))
    lines.append(f"wall time {summary['wall_seconds']:.0f} s; results.json, results.md and the plots in "
                 f"{summary['out_dir']}/")
    return "\n".join(lines)
