"""``cfer export --model RUN_OR_CHECKPOINT --out FILE``: a trained model as ONNX or TorchScript, checked.

The model is resolved as ``cfer predict`` resolves it (:func:`cfer.predict.load_classifier`), written by
:func:`cfer.models.export.export_model` with its :class:`~cfer.models.export.ModelSpec` in the file's
metadata, loaded back with ONNX Runtime or ``torch.jit``, and compared with PyTorch on synthetic faces
of the embedded dataset: the largest absolute output difference is reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from cfer.data.images import display_path
from cfer.data.synthetic import FaceRenderer
from cfer.models.export import (
    EXPORT_FORMATS,
    ModelSpec,
    export_format_of,
    export_model,
    load_exported,
    max_output_difference,
)
from cfer.predict.loading import load_classifier
from cfer.taxonomy import CATEGORY_NAMES

logger = logging.getLogger(__name__)

__all__ = ["ExportConfig", "ExportSummary", "format_export_summary", "run_export"]


@dataclass(frozen=True)
class ExportConfig:
    """Settings of ``cfer export``."""

    format: str | None = None  # onnx or torchscript; None: from the output file's suffix (.onnx, .pt, .ts)
    size: int | None = None  # input side in pixels; None: the one the model was trained at
    check_faces: int = 8  # synthetic faces the export is compared with PyTorch on (0: no check)

    def __post_init__(self) -> None:
        if self.format is not None:
            EXPORT_FORMATS.key(self.format)  # an unknown name fails here, listing the known ones
        if self.check_faces < 0:
            raise ValueError(f"check_faces must be 0 or more, got {self.check_faces}")


@dataclass(frozen=True)
class ExportSummary:
    """What ``cfer export`` wrote."""

    source: str  # the checkpoint exported
    path: str  # the file written
    format: str
    bytes: int  # its size
    spec: ModelSpec  # the input contract recorded in it
    max_difference: float | None  # largest |output difference| from PyTorch on the check faces; None: unchecked
    check_faces: int


def run_export(model: str | Path, out: str | Path, config: ExportConfig = ExportConfig()) -> ExportSummary:
    """Exports the model of a run directory or checkpoint and checks it against PyTorch.

    Args:
        model: A run directory or a cfer checkpoint (see :func:`cfer.predict.load_classifier`).
        out: The file to write.
        config: The settings.

    Returns:
        The summary.

    Raises:
        FileNotFoundError: If there is no model at ``model``.
        ValueError: If ``model`` is already an exported file, or the format cannot be told from ``out``.
    """
    format_name = EXPORT_FORMATS.key(config.format) if config.format else export_format_of(out)
    classifier = load_classifier(model, device="cpu", size=config.size)
    if classifier.model is None:
        raise ValueError(f"{display_path(classifier.source)} is already an exported file; pass the checkpoint or "
                         "run directory it came from")
    spec = classifier.spec
    path = export_model(classifier.model, spec, out, format_name)
    difference = None
    if config.check_faces:
        keys = [(subject, CATEGORY_NAMES[1 + subject % (len(CATEGORY_NAMES) - 1)], 0)
                for subject in range(config.check_faces)]
        faces = torch.from_numpy(FaceRenderer(spec.input_size).render(keys).images)
        difference = max_output_difference(classifier.model, load_exported(path), spec.normalise(faces))
        logger.info("export checked on %d synthetic faces: max |output difference| %.2e", len(keys), difference)
    return ExportSummary(display_path(classifier.source), display_path(path), format_name, path.stat().st_size, spec,
                         difference, config.check_faces)


def format_export_summary(summary: ExportSummary) -> str:
    """What was written and the input contract, for the command line."""
    spec = summary.spec
    outputs = f"logits (batch, {len(spec.class_names)})"
    if spec.has_regression:
        outputs += f", valence_arousal (batch, {len(spec.regression_outputs)}: {', '.join(spec.regression_outputs)})"
    lines = [
        f"exported {summary.source} to {summary.path} ({summary.format}, {summary.bytes / 1e6:.1f} MB)",
        (f"input: images float32 (batch, 3, {spec.input_size}, {spec.input_size}) {spec.channel_order}, "
         f"(pixel * {spec.pixel_scale:.6g} - mean) / std, mean {[round(v, 4) for v in spec.mean]}, "
         f"std {[round(v, 4) for v in spec.std]}"),
        f"faces: {spec.alignment}, margin {spec.face_margin}, {spec.align_size} px, then resized ({spec.resize})",
        f"outputs: {outputs}",
        f"classes: {', '.join(spec.class_names)}",
    ]
    if summary.max_difference is not None:
        lines.append(f"checked against PyTorch on {summary.check_faces} synthetic faces: max |output difference| "
                     f"{summary.max_difference:.2e}")
    return "\n".join(lines)
