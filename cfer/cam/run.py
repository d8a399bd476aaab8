"""``cfer gradcam``: maps, figures and scores of a trained model on held-out synthetic faces.

:func:`run_gradcam` loads the model of a run directory (or any cfer checkpoint file), renders
synthetic faces of subjects it never saw, and writes to ``out_dir``::

    gradcam.json                  every score below, the settings, and what each number means
    subject_grid.png              one subject, one row per category: the image, the map of its own
                                  class, and for a compound the maps of its two components
    basic_compound/<name>.png     per compound: a few subjects, the compound's map beside its
                                  components' maps, with their similarity
    similarity.png                per compound: map similarity to its components vs other basics
    subject_grid_probe.png        the grid for the linear probe, when one was fitted

Scores (see :mod:`cfer.cam.scores`):

* ``pointing``: for each image, the map of its own class (and, on compound images, the maps of the
  components) against the union of the regions its active AUs move: pointing-game hit rate and the
  share of map energy inside, with the region's share of the image as the chance level.
* ``similarity``: compound map vs its components' maps and vs the other basic classes' maps
  (:mod:`cfer.cam.compound`). This needs a model with compound outputs; for a basic-phase model a
  linear probe over all categories is fitted on its frozen backbone (:mod:`cfer.cam.probe`) unless
  ``fit_probe`` is off, in which case the JSON says why there is no similarity.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from cfer.cam.compound import compound_similarity, summarize_similarity
from cfer.cam.explainer import CamExplainer
from cfer.cam.figures import plot_map_grid, plot_similarity
from cfer.cam.methods import CAM_METHODS, CLASS_BLIND_METHODS, canonical_cam_name
from cfer.cam.probe import ProbeConfig, fit_linear_probe, probe_accuracy
from cfer.cam.regions import active_au_mask
from cfer.cam.scores import energy_inside, pearson_correlation, pointing_hit, region_fraction, top_fraction_iou
from cfer.config import config_to_dict
from cfer.data.dataset import FaceExpressionDataset
from cfer.data.synthetic import RENDERED_AUS, FaceRenderer, SyntheticConfig, SyntheticFaces
from cfer.io import write_json
from cfer.models.checkpoint import load_checkpoint
from cfer.models.classifier import ExpressionClassifier
from cfer.taxonomy import BASIC, CATEGORY_NAMES, COMPOUND, NEUTRAL, get_category

logger = logging.getLogger(__name__)

__all__ = ["GradCamConfig", "format_gradcam_summary", "load_explained_model", "run_gradcam"]

_FALLBACK_SIZE = 64
_CONFIG_SEARCH_DEPTH = 4  # folders, from the checkpoint's own upwards, searched for the run's config.yaml


@dataclass(frozen=True)
class GradCamConfig:
    """Settings of ``cfer gradcam``."""

    method: str = "gradcam"  # CAM method name (cfer.cam.CAM_METHODS), e.g. gradcam, gradcam++, layercam
    target_layer: str | None = None  # dotted module name, e.g. backbone.bn2; None: found from min_map_size
    # automatic target layer: the last stage whose map is at least this many cells wide; a stride-32
    # CNN's last map is 2 x 2 on 64 px faces, too coarse to tell facial regions apart (1: last stage)
    min_map_size: int = 4
    subjects: int = 8  # held-out synthetic subjects whose 22 images are explained and scored
    first_subject: int | None = None  # their first id; None: right after the run's training subjects
    size: int | None = None  # image side in pixels; None: the run's data.size
    seed: int | None = None  # synthetic dataset seed; None: the run's data.seed
    grid_subject: int = 0  # which explained subject (0-based) the all-categories grid shows
    panel_subjects: int = 4  # rows of each basic-compound panel; 0 writes no panels
    panels: tuple[str, ...] = COMPOUND  # compounds that get a basic-compound panel
    top_fraction: float = 0.2  # share of most salient pixels compared by the IoU
    au_threshold: float = 0.3  # AU intensity above which an AU's regions count as its ground truth
    fit_probe: bool = True  # for a model without compound outputs, fit a linear probe to measure similarity
    probe_subjects: int = 40  # synthetic subjects the probe trains on, after the explained ones
    probe: ProbeConfig = field(default_factory=ProbeConfig)  # probe optimisation
    batch_size: int = 32  # images per CAM pass

    def __post_init__(self) -> None:
        CAM_METHODS.key(self.method)  # an unknown name fails here, listing the known ones
        if self.subjects < 1 or self.probe_subjects < 1 or self.batch_size < 1 or self.min_map_size < 1:
            raise ValueError("subjects, probe_subjects, batch_size and min_map_size must be positive")
        not_compound = [name for name in self.panels if name not in COMPOUND]
        if not_compound:
            raise ValueError(f"panels must be compound categories, got {not_compound}; compounds: {list(COMPOUND)}")
        if self.panel_subjects < 0:
            raise ValueError(f"panel_subjects must be 0 or more, got {self.panel_subjects}")
        if not 0 <= self.grid_subject < self.subjects:
            raise ValueError(f"grid_subject must be in [0, {self.subjects}), got {self.grid_subject}")
        if not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1], got {self.top_fraction}")


@dataclass(frozen=True)
class _Faces:
    """Rendered faces with their ground truth."""

    images: torch.Tensor  # (N, 3, H, W) uint8
    categories: tuple[str, ...]  # (N,) category of each image
    subject_ids: np.ndarray  # (N,)
    au_masks: np.ndarray  # (N, H, W) bool: regions of the active AUs

    def indices(self, category: str | None = None, subject: int | None = None) -> np.ndarray:
        keep = np.ones(len(self.categories), dtype=bool)
        if category is not None:
            keep &= np.array([name == category for name in self.categories])
        if subject is not None:
            keep &= self.subject_ids == subject
        return np.flatnonzero(keep)


def load_explained_model(source: str | Path) -> tuple[ExpressionClassifier, tuple[str, ...], dict[str, Any]]:
    """Loads a model to explain from a run directory or a checkpoint file.

    Args:
        source: A run directory holding ``model.safetensors`` (the basic phase, and any later phase
            that writes its model there), or a cfer checkpoint file.

    Returns:
        ``(model, class_names, data_settings)``; ``data_settings`` is the ``data`` section of the
        run's ``config.yaml`` (the nearest one beside the checkpoint or up to three folders above
        it, top level or under ``basic``), or ``{}``.

    Raises:
        FileNotFoundError: If there is no checkpoint; the message lists the checkpoints found below
            a directory.
        ValueError: If the checkpoint does not name one class per output.
    """
    path = Path(source)
    checkpoint = path / "model.safetensors" if path.is_dir() else path
    if not checkpoint.is_file():
        found = sorted(str(p.relative_to(path)) for p in path.rglob("*.safetensors"))[:10] if path.is_dir() else []
        raise FileNotFoundError(
            f"no checkpoint at {checkpoint}; pass a run directory with model.safetensors or a checkpoint file"
            + (f" (found below {path}: {found})" if found else "")
        )
    model, metadata = load_checkpoint(checkpoint)
    classes = metadata.get("classes") or metadata.get("class_names")
    if classes is None or len(classes) != model.num_classes:
        raise ValueError(
            f"{checkpoint} must name its {model.num_classes} classes in its metadata ('classes'), got {classes!r}"
        )
    return model, tuple(classes), _data_settings(checkpoint)


def run_gradcam(run_dir: str | Path, out_dir: str | Path, config: GradCamConfig = GradCamConfig()) -> dict:
    """Explains a trained model on held-out synthetic faces; writes figures and scores.

    Args:
        run_dir: A run directory with ``model.safetensors``, or a cfer checkpoint file.
        out_dir: Where the PNGs and ``gradcam.json`` go (see the module docstring); every file is
            written atomically.
        config: The settings.

    Returns:
        The summary also written to ``out_dir/gradcam.json``.

    Raises:
        FileNotFoundError: If there is no checkpoint.
        KeyError: If the method or target layer is unknown.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    model, classes, data = load_explained_model(run_dir)
    model.eval()
    if data.get("source", "synthetic") != "synthetic":
        logger.warning("the model was trained on %r images; it is explained on synthetic faces, whose "
                       "AU regions are known", data["source"])
    size = config.size or int(data.get("size", _FALLBACK_SIZE))
    seed = int(data.get("seed", 0)) if config.seed is None else config.seed
    first = int(data.get("subjects", 0)) if config.first_subject is None else config.first_subject
    subjects = range(first, first + config.subjects)
    categories = tuple(name for name in CATEGORY_NAMES if name != NEUTRAL or NEUTRAL in classes)
    faces = _render(size, seed, subjects, categories, config.au_threshold)
    logger.info("explaining %d images of %d held-out subjects (%d px) with %s", len(faces.images), len(subjects),
                size, config.method)

    with CamExplainer(model, classes, config.method, config.target_layer, batch_size=config.batch_size,
                      input_size=size, min_map_size=config.min_map_size) as explainer:
        target_layer = explainer.target_layer_name
        maps = _maps_by_category(explainer, faces)
    summary: dict[str, Any] = {
        "checkpoint": str(run_dir),
        "classes": list(classes),
        "method": canonical_cam_name(config.method),
        "target_layer": target_layer,
        "images": {"subjects": [subjects.start, subjects.stop - 1], "size": size, "seed": seed,
                   "count": len(faces.images), "categories": list(categories)},
        "pointing": _pointing(maps, faces),
    }
    grid_subject = subjects[config.grid_subject]
    written = [plot_map_grid(*_grid(maps, faces, grid_subject, config.top_fraction), out_dir / "subject_grid.png",
                             title=f"{config.method} maps, subject {grid_subject}")]

    similarity_model, similarity_maps = None, None
    missing = [name for name in (*BASIC, *COMPOUND) if name not in classes]
    if not missing:
        similarity_model, similarity_maps = "the run's model", maps
    elif config.fit_probe:
        probe, probe_info = _fit_probe(model, categories, faces, size, seed, subjects.stop, config)
        with CamExplainer(probe, probe_info["classes"], config.method, config.target_layer,
                          batch_size=config.batch_size, input_size=size,
                          min_map_size=config.min_map_size) as explainer:
            similarity_maps = _maps_by_category(explainer, faces)
        probe_info["pointing"] = _pointing(similarity_maps, faces)
        summary["probe"] = probe_info
        similarity_model = "linear probe over all categories on the run's frozen backbone (cfer.cam.probe)"
        written.append(plot_map_grid(
            *_grid(similarity_maps, faces, grid_subject, config.top_fraction), out_dir / "subject_grid_probe.png",
            title=f"{config.method} maps of the linear probe, subject {grid_subject}"))

    if similarity_maps is None:
        summary["similarity"] = {
            "available": False,
            "reason": f"compound-vs-component similarity needs a model with compound outputs; this one lacks "
                      f"{missing} (set fit_probe to measure it with a linear probe on its frozen backbone)",
        }
        panel_maps = maps
    else:
        per_compound = {name: compound_similarity(similarity_maps[name], name, BASIC, config.top_fraction)
                        for name in COMPOUND}
        summary["similarity"] = {"available": True, "model": similarity_model,
                                 "top_fraction": config.top_fraction, **summarize_similarity(per_compound)}
        if canonical_cam_name(config.method) in CLASS_BLIND_METHODS:
            summary["similarity"]["warning"] = "this method gives every class the same map: similarity is 1 by design"
        written.append(plot_similarity(summary["similarity"]["per_compound"], out_dir / "similarity.png",
                                       title=f"{config.method}: compound map vs basic maps ({similarity_model})"))
        panel_maps = similarity_maps
    source = " (maps of the linear probe)" if "probe" in summary else ""
    for name in config.panels if config.panel_subjects > 0 else ():
        rows = list(subjects[: config.panel_subjects])
        components = " + ".join(get_category(name).components)
        written.append(plot_map_grid(*_panel(panel_maps, faces, name, rows, config.top_fraction),
                                     out_dir / "basic_compound" / f"{name}.png",
                                     title=f"{name.replace('_', ' ')} = {components}{source}"))
    summary["figures"] = [str(path.relative_to(out_dir)) for path in written]
    summary["settings"] = config_to_dict(config)
    summary["wall_seconds"] = time.perf_counter() - start
    write_json(out_dir / "gradcam.json", summary)
    return summary


def format_gradcam_summary(summary: dict) -> str:
    """The one-screen text summary of :func:`run_gradcam`'s result."""

    def number(value: float | None, digits: int = 2) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    images = summary["images"]
    first, last = images["subjects"]
    lines = [
        (
            f"{summary['method']} on {images['count']} images of held-out subjects {first}-{last} "
            f"({images['size']} px), target layer {summary['target_layer']}"
        )
    ]
    lines.append("pointing game against the regions of the active AUs (hit rate | energy inside | chance):")
    for label, scores in summary["pointing"]["groups"].items():
        lines.append(f"  {label:<32} {number(scores['hit_rate'])} | {number(scores['energy'])} | "
                     f"{number(scores['chance'])}  ({scores['maps']} maps)")
    similarity = summary["similarity"]
    if not similarity["available"]:
        lines.append(f"similarity: {similarity['reason']}")
    else:
        overall = similarity["overall"]
        if "probe" in summary:
            lines.append(f"linear probe over {len(summary['probe']['classes'])} classes: accuracy "
                         f"{number(summary['probe']['accuracy'])} on the explained images "
                         f"(chance {number(1 / len(summary['probe']['classes']))})")
        lines.append(f"compound map vs its components' maps vs the other basic classes' maps ({similarity['model']}):")
        lines.append(f"  Pearson r  {number(overall['pearson_components'])} vs {number(overall['pearson_others'])}; "
                     f"components higher on {number(overall['pearson_components_higher'])} of images "
                     f"(Wilcoxon p {number(overall['pearson_wilcoxon_p'], 3)})")
        lines.append(f"  top-{similarity['top_fraction']:.0%} IoU {number(overall['iou_components'])} vs "
                     f"{number(overall['iou_others'])}; components higher on "
                     f"{number(overall['iou_components_higher'])} of images "
                     f"(Wilcoxon p {number(overall['iou_wilcoxon_p'], 3)})")
        if "warning" in similarity:
            lines.append(f"  warning: {similarity['warning']}")
    lines.append(f"figures: {', '.join(summary['figures'][:3])}{' ...' if len(summary['figures']) > 3 else ''}")
    return "\n".join(lines)


# --- steps ------------------------------------------------------------------------------------------


def _data_settings(checkpoint: Path) -> dict[str, Any]:
    # A continual run keeps its config.yaml three folders above a model in runs/<strategy>/order_<k>/.
    for folder in [checkpoint.parent, *checkpoint.parent.parents][:_CONFIG_SEARCH_DEPTH]:
        config_path = folder / "config.yaml"
        if not config_path.is_file():
            continue
        settings = yaml.safe_load(config_path.read_text()) or {}
        for section in (settings, settings.get("basic") or {}):
            if isinstance(section.get("data"), dict):
                return dict(section["data"])
    return {}


def _render(size: int, seed: int, subjects: range, categories: Sequence[str], au_threshold: float) -> _Faces:
    keys = [(subject, name, 0) for subject in subjects for name in categories]
    batch = FaceRenderer(size, seed).render(keys, regions=True)
    masks = active_au_mask(batch.au_intensities, RENDERED_AUS, batch.regions, threshold=au_threshold)
    return _Faces(
        images=torch.from_numpy(batch.images),
        categories=tuple(name for _, name, _ in keys),
        subject_ids=np.array([subject for subject, _, _ in keys]),
        au_masks=masks,
    )


def _maps_by_category(explainer: CamExplainer, faces: _Faces) -> dict[str, dict[str, np.ndarray]]:
    """Per category, the maps of its own class (when the model has it) and of every basic class."""
    known = explainer.class_names or ()
    result = {}
    for category in dict.fromkeys(faces.categories):
        wanted = [category] if category in known else []
        wanted += [name for name in BASIC if name in known and name not in wanted]
        maps = explainer.class_maps(faces.images[faces.indices(category)], wanted)
        result[category] = {name: maps[:, k] for k, name in enumerate(wanted)}
    return result


def _pointing(maps: dict[str, dict[str, np.ndarray]], faces: _Faces) -> dict:
    """Pointing game and energy of own-class and component maps against the active-AU regions."""
    groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {
        "own class, basic images": [], "own class, compound images": [], "components, compound images": []}
    per_category = {}
    for category, class_maps in maps.items():
        kind = get_category(category).kind
        if kind == "neutral":
            continue  # no active AU, no region to point at
        masks = faces.au_masks[faces.indices(category)]
        if category in class_maps:
            groups[f"own class, {kind} images"].append((class_maps[category], masks))
            per_category[category] = _localisation(class_maps[category], masks)
        if kind == "compound":
            for component in get_category(category).components:
                if component in class_maps:
                    groups["components, compound images"].append((class_maps[component], masks))
    return {
        "region": "union of the facial regions moved by the image's AUs above au_threshold",
        "groups": {
            label: _localisation(np.concatenate([m for m, _ in pairs]), np.concatenate([r for _, r in pairs]))
            for label, pairs in groups.items() if pairs
        },
        "per_category": per_category,
    }


def _localisation(maps: np.ndarray, masks: np.ndarray) -> dict:
    hits = pointing_hit(maps, masks)
    energy = energy_inside(maps, masks)
    return {
        "hit_rate": float(hits.mean()),
        "energy": float(np.nanmean(energy)) if np.isfinite(energy).any() else None,
        "chance": float(region_fraction(masks).mean()),
        "maps": len(maps),
    }


def _fit_probe(model: ExpressionClassifier, probe_classes: tuple[str, ...], faces: _Faces, size: int, seed: int,
               first_subject: int, config: GradCamConfig) -> tuple[ExpressionClassifier, dict]:
    """A linear probe over ``probe_classes`` on subjects after the explained ones, scored on those."""
    training = SyntheticFaces(SyntheticConfig(subjects=config.probe_subjects, size=size, seed=seed,
                                              categories=probe_classes, first_subject=first_subject))
    probe = fit_linear_probe(model, training, config.probe)
    held_out = [i for i, name in enumerate(faces.categories) if name in probe_classes]
    evaluation = FaceExpressionDataset(
        images=faces.images[held_out],
        targets=torch.tensor([probe_classes.index(faces.categories[i]) for i in held_out]),
        classes=probe_classes,
        subject_ids=torch.from_numpy(faces.subject_ids[held_out]),
    )
    info = {
        "classes": list(probe_classes),
        "subjects": [first_subject, first_subject + config.probe_subjects - 1],
        "accuracy": probe_accuracy(probe, evaluation),
        "accuracy_basic_classes": _accuracy_on(probe, evaluation, BASIC),
        "accuracy_compound_classes": _accuracy_on(probe, evaluation, COMPOUND),
    }
    logger.info("linear probe: held-out accuracy %.3f over %d classes", info["accuracy"], len(probe_classes))
    return probe, info


def _accuracy_on(model: ExpressionClassifier, dataset: FaceExpressionDataset, names: Sequence[str]) -> float:
    keep = [i for i, target in enumerate(dataset.targets.tolist()) if dataset.classes[target] in names]
    return probe_accuracy(model, dataset.subset(keep)) if keep else 0.0


def _grid(maps: dict[str, dict[str, np.ndarray]], faces: _Faces, subject: int, top_fraction: float):
    """Arguments of plot_map_grid for one subject: a row per category, its own map, its components'."""
    return _rows(maps, faces, [(category, subject) for category in maps], top_fraction, list(maps))


def _panel(maps: dict[str, dict[str, np.ndarray]], faces: _Faces, compound: str, subjects: Sequence[int],
           top_fraction: float):
    """Arguments of plot_map_grid for one compound: a row per subject, compound map then components."""
    titles = [f"{compound}, subject {subject}" for subject in subjects]
    return _rows(maps, faces, [(compound, subject) for subject in subjects], top_fraction, titles)


def _rows(maps: dict[str, dict[str, np.ndarray]], faces: _Faces, pairs: Sequence[tuple[str, int]],
          top_fraction: float, titles: list[str]):
    images, rows, labels = [], [], []
    for category, subject in pairs:
        image, cells, cell_labels = _row(maps, faces, category, subject, top_fraction)
        images.append(image)
        rows.append(cells)
        labels.append(cell_labels)
    return torch.stack(images), rows, labels, titles


def _row(maps: dict[str, dict[str, np.ndarray]], faces: _Faces, category: str, subject: int, top_fraction: float):
    """One subject's image of a category, the map of the category, and its components' maps."""
    indices = faces.indices(category)
    position = int(np.flatnonzero(faces.subject_ids[indices] == subject)[0])
    class_maps = maps[category]
    own = class_maps[category][position] if category in class_maps else None
    cells: list[np.ndarray | None] = [own]
    cell_labels = [f"map of {category}" if own is not None else category]
    for component in get_category(category).components:
        cam = class_maps[component][position] if component in class_maps else None
        cells.append(cam)
        cell_labels.append(_similarity_label(component, cam, own, top_fraction))
    return faces.images[indices[position]], cells, cell_labels


def _similarity_label(name: str, cam: np.ndarray | None, compound_map: np.ndarray | None, top_fraction: float) -> str:
    if cam is None or compound_map is None:
        return f"map of {name}"
    r = float(pearson_correlation(cam, compound_map))
    iou = float(top_fraction_iou(cam, compound_map, top_fraction))
    return f"map of {name}\nr={r:.2f} IoU={iou:.2f}"
