"""From ``--model RUN_OR_FILE`` to a classifier ready to run: the file, its classes, its input contract.

``source`` may be

* a cfer checkpoint (``*.safetensors``) of any phase: basic, incremental, few-shot or distilled;
* a file written by ``cfer export`` (``.onnx``, or TorchScript ``.pt``/``.ts``/``.torchscript``);
* a run directory: its own ``model.safetensors`` (``runs/basic``, ``runs/incremental/basic``, a
  distilled student ``runs/distill/students/<name>``, an order ``runs/<strategy>/order_<k>``), or, for
  a ``cfer train-incremental`` run (``runs/incremental``), the final model of its first strategy that
  exports one (``runs/<strategy>/order_0/model.safetensors``, strategies in the run's
  ``config.yaml`` order).

The face crop's side is the one the model was trained at: the checkpoint's ``size`` metadata
(distilled models), else the ``data.size`` of the run's ``config.yaml`` (the nearest one beside the
checkpoint or up to three folders above it, top level or under ``basic``), else the backbone's
default input size, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from cfer.data.faces import PreprocessConfig
from cfer.data.images import display_path
from cfer.models.checkpoint import load_checkpoint
from cfer.models.classifier import ExpressionClassifier
from cfer.models.export import EXPORT_FORMATS, ModelSpec, Outputs, export_format_of, load_exported

logger = logging.getLogger(__name__)

__all__ = ["LoadedClassifier", "load_classifier", "resolve_device", "resolve_model_file", "spec_from_checkpoint"]

CHECKPOINT_NAME = "model.safetensors"
_CONFIG_SEARCH_DEPTH = 4  # folders, from the checkpoint's own upwards, searched for the run's config.yaml
_AFFECT_NAMES = ("valence", "arousal")


@dataclass(frozen=True)
class LoadedClassifier:
    """A classifier and what it needs to be fed.

    Attributes:
        spec: Classes, outputs and input contract.
        run: Maps a normalised float32 ``(B, 3, S, S)`` batch to ``(logits (B, C), regression (B, R) or None)``,
            CPU float32 tensors.
        model: The PyTorch model, for Grad-CAM and export; None for an exported file.
        source: The file loaded.
        device: Where ``run`` computes.
    """

    spec: ModelSpec
    run: Callable[[Tensor], Outputs]
    model: ExpressionClassifier | None
    source: Path
    device: torch.device


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when present, else the CPU; anything else as ``torch.device`` reads it.

    Raises:
        ValueError: If CUDA is asked for and none is available, or the name is no device.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        target = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {device!r} ({error}); use auto, cpu or cuda") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but no CUDA device is available; use auto or cpu")
    return target


def load_classifier(source: str | Path, device: str | torch.device = "auto", size: int | None = None,
                    threads: int | None = None) -> LoadedClassifier:
    """Loads a checkpoint, an exported file or a run directory's model (see the module docstring).

    Args:
        source: File or run directory.
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``; exported files run on the CPU.
        size: Side of the face crops, overriding the one the model was trained at.
        threads: ONNX Runtime's CPU threads, for an ONNX file.

    Returns:
        The classifier. A PyTorch model computes in float16 autocast on CUDA.

    Raises:
        FileNotFoundError: If ``source`` does not exist or a directory holds no model; the message
            says what was looked for.
        ValueError: If the file is not a cfer checkpoint or export, or its metadata does not name its classes.
    """
    path = resolve_model_file(source)
    if path.suffix.lower() != ".safetensors":
        exported = load_exported(path, threads)
        spec = exported.spec if size is None else _resized(exported.spec, size)
        return LoadedClassifier(spec, exported.run, None, path, torch.device("cpu"))
    target = resolve_device(device)
    model, metadata = load_checkpoint(path, target)
    spec = spec_from_checkpoint(model, metadata, path, size)
    logger.info("loaded %s: %d classes, %d px faces%s, on %s", display_path(path), len(spec.class_names),
                spec.input_size, " with valence and arousal" if spec.has_regression else "", target)
    return LoadedClassifier(spec, _torch_runner(model, target), model, path, target)


def resolve_model_file(source: str | Path) -> Path:
    """The model file that ``source`` names (see the module docstring).

    Raises:
        FileNotFoundError: If there is none; the message lists what was looked for and the checkpoints
            found below a directory.
        ValueError: If ``source`` is a file with an unknown suffix.
    """
    path = Path(source)
    if path.is_file():
        if path.suffix.lower() != ".safetensors":
            try:
                export_format_of(path)
            except ValueError:
                known = [".safetensors"] + [suffix for entry in EXPORT_FORMATS.values() for suffix in entry.suffixes]
                raise ValueError(f"--model {display_path(path)}: not a model file (known suffixes: {known}); pass "
                                 "a cfer checkpoint, a `cfer export` file or a run directory") from None
        return path
    if not path.exists():
        raise FileNotFoundError(f"--model {display_path(path)} does not exist; pass a run directory (e.g. "
                                "runs/incremental after `cfer train-incremental`), a checkpoint (*.safetensors) "
                                "or a `cfer export` file")
    candidates = [path / CHECKPOINT_NAME, *_incremental_candidates(path)]
    for candidate in candidates:
        if candidate.is_file():
            _log_choice(path, candidate)
            return candidate
    found = sorted(display_path(p.relative_to(path)) for p in path.rglob(f"*{CHECKPOINT_NAME}"))
    looked = [display_path(p.relative_to(path)) for p in candidates[:4]]
    raise FileNotFoundError(
        f"no model in run directory {display_path(path)}: looked for {', '.join(looked)}"
        + (f"; found below it: {found[:10]}; pass one of them" if found else
           "; the run may be unfinished (start its command again to resume it)")
    )


def spec_from_checkpoint(model: ExpressionClassifier, metadata: Mapping[str, Any], checkpoint: Path,
                         size: int | None = None) -> ModelSpec:
    """The input contract of a checkpoint's model.

    Args:
        model: The loaded model.
        metadata: The checkpoint's metadata (``classes``, ``phase``, ``size`` ...).
        checkpoint: Its file, from which the run's ``config.yaml`` is searched.
        size: Face-crop side overriding the trained one.

    Raises:
        ValueError: If the metadata does not name one class per output.
    """
    classes = metadata.get("classes") or metadata.get("class_names")
    if classes is None or len(classes) != model.num_classes:
        raise ValueError(f"{display_path(checkpoint)} must name its {model.num_classes} classes in its metadata "
                         f"('classes'), got {classes!r}")
    data_config = model.data_config
    regression = model.config.regression_outputs if model.config is not None and model.regressor is not None else 0
    names = _AFFECT_NAMES if regression == len(_AFFECT_NAMES) else tuple(f"output_{k}" for k in range(regression))
    return ModelSpec(
        class_names=tuple(classes),
        input_size=size or _trained_size(metadata, checkpoint, int(data_config["input_size"][-1])),
        mean=tuple(float(value) for value in data_config["mean"]),
        std=tuple(float(value) for value in data_config["std"]),
        face_margin=PreprocessConfig.margin,
        align_size=PreprocessConfig.size,
        regression_outputs=names,
        backbone=model.config.backbone if model.config is not None else "",
        phase=str(metadata.get("phase", "")),
    )


def _resized(spec: ModelSpec, size: int) -> ModelSpec:
    return replace(spec, input_size=size)


def _torch_runner(model: ExpressionClassifier, device: torch.device) -> Callable[[Tensor], Outputs]:
    model.eval()
    amp = device.type == "cuda"

    def run(images: Tensor) -> Outputs:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            inputs = images.to(device, non_blocking=True)
            if model.regressor is not None:
                logits, regression = model.forward_multitask(inputs)
            else:
                logits, regression = model(inputs), None
        return logits.float().cpu(), None if regression is None else regression.float().cpu()

    return run


def _incremental_candidates(run_dir: Path) -> list[Path]:
    """The final models of an incremental run, its configured strategies' first order first."""
    if not (run_dir / "runs").is_dir():
        return []
    strategies = (_read_config(run_dir / "config.yaml") or {}).get("strategies") or ["cfer"]
    first = [run_dir / "runs" / str(name) / "order_0" / CHECKPOINT_NAME for name in strategies]
    others = sorted((run_dir / "runs").glob(f"*/order_*/{CHECKPOINT_NAME}"))
    return list(dict.fromkeys(first + others))


def _log_choice(run_dir: Path, chosen: Path) -> None:
    if chosen.parent == run_dir:
        return
    others = [p for p in _incremental_candidates(run_dir) if p.is_file() and p != chosen]
    logger.info("using %s%s", display_path(chosen), f" ({len(others)} other model(s) in the run; pass a file "
                "to choose another)" if others else "")


def _trained_size(metadata: Mapping[str, Any], checkpoint: Path, default: int) -> int:
    if metadata.get("size"):
        return int(metadata["size"])
    for folder in [checkpoint.parent, *checkpoint.parent.parents][:_CONFIG_SEARCH_DEPTH]:
        settings = _read_config(folder / "config.yaml")
        for section in (settings or {}, (settings or {}).get("basic") or {}):
            data = section.get("data") if isinstance(section, dict) else None
            if isinstance(data, dict) and data.get("size"):
                return int(data["size"])
    logger.warning("%s records no training image size and no run config.yaml was found near it; using the "
                   "backbone's default input size %d px (pass --size to change it)", display_path(checkpoint), default)
    return default


def _read_config(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        logger.warning("ignoring unreadable %s (%s)", display_path(path), error)
        return None
    return settings if isinstance(settings, dict) else None
