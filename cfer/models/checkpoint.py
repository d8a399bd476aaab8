"""Save and load :class:`~cfer.models.classifier.ExpressionClassifier` checkpoints as safetensors.

A checkpoint is one ``.safetensors`` file: the model's state dict, plus string metadata holding
the :class:`~cfer.models.classifier.ModelConfig` and the number of classes (enough to rebuild the
model) and the caller's metadata (class names, training stage ...) as JSON. Loading parses JSON and
tensors only, never unpickles.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from cfer.config import config_from_dict
from cfer.io import atomic_write_bytes
from cfer.models.classifier import ExpressionClassifier, ModelConfig, create_model

logger = logging.getLogger(__name__)

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "cfer.ExpressionClassifier/1"
"""Value of the ``format`` metadata entry; bumped when the layout changes."""


def save_checkpoint(
    model: ExpressionClassifier,
    path: str | Path,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a model and its metadata to a safetensors file, atomically.

    The file is written next to ``path`` under a temporary name and then renamed over it, so an
    interrupted save never leaves a truncated checkpoint behind.

    Args:
        model: Model built by :func:`~cfer.models.classifier.create_model` (it carries its config).
        path: Destination, conventionally ``*.safetensors``; parent folders are created.
        metadata: JSON-serialisable extra information, e.g. ``{'class_names': [...]}``.

    Returns:
        The path written.

    Raises:
        ValueError: If the model has no config.
        TypeError: If ``metadata`` is not JSON-serialisable.
    """
    if model.config is None:
        raise ValueError("the model has no config to rebuild it from; build it with create_model")
    path = Path(path)
    header = {
        "format": CHECKPOINT_FORMAT,
        "model_config": json.dumps(dataclasses.asdict(model.config)),
        "num_classes": str(model.num_classes),
        "metadata": json.dumps(dict(metadata or {})),
    }
    tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    atomic_write_bytes(path, safetensors.torch.save(tensors, metadata=header))
    logger.info("saved checkpoint %s (%d classes)", path, model.num_classes)
    return path


def load_checkpoint(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[ExpressionClassifier, dict[str, Any]]:
    """Rebuild a model from a checkpoint written by :func:`save_checkpoint`.

    The model is built from the stored config with ``pretrained='none'`` and no weights file (the
    checkpoint holds all weights, so nothing is downloaded or read besides ``path``), with the
    stored number of classes, then loaded strictly. Every parameter is trainable and the model is
    in eval mode; freezing is not stored.

    Args:
        path: Checkpoint file.
        device: Device to load the tensors to.

    Returns:
        ``(model, metadata)``, ``metadata`` being the dict given to :func:`save_checkpoint`.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a cfer checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    header, state = _read(path, device)
    try:
        stored = config_from_dict(ModelConfig, json.loads(header["model_config"]), source=str(path))
        num_classes, metadata = int(header["num_classes"]), json.loads(header["metadata"])
    except (KeyError, ValueError, TypeError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path}: damaged cfer checkpoint header ({type(error).__name__}: {error}); "
                         f"{_REMEDY}") from None
    config = dataclasses.replace(stored, pretrained="none", weights=None)
    model = create_model(config, num_classes=num_classes)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:  # missing, unexpected or mis-shaped tensors
        first = str(error).strip().splitlines()[:3]
        raise ValueError(f"{path}: its tensors do not fit the model its header describes ({' '.join(first)}); "
                         f"{_REMEDY}") from None
    # keep the config the model was trained with (its weights provenance), not the rebuild one
    model.config = stored
    model.to(device).eval()
    return model, metadata


_REMEDY = "train or copy the model again (a file cut short by a full disk or an interrupted copy reads so)"


def _read(path: Path, device: torch.device | str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The header and tensors of a cfer checkpoint file, or a ValueError naming it."""
    try:
        with safetensors.safe_open(str(path), framework="pt", device=str(device)) as reader:
            header = reader.metadata() or {}
            if header.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(
                    f"{path} is not a cfer checkpoint: format {header.get('format')!r}, "
                    f"expected {CHECKPOINT_FORMAT!r}"
                )
            state = {key: reader.get_tensor(key) for key in reader.keys()}  # noqa: SIM118 (not a dict)
    except safetensors.SafetensorError as error:  # truncated, corrupt, or not a safetensors file at all
        raise ValueError(f"{path} is not a readable .safetensors file ({error}); {_REMEDY}") from None
    return header, state
