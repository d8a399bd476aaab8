"""Export a trained classifier to ONNX or TorchScript, with its input contract inside the file.

An exported file holds the network from normalised images to logits (and, for a multi-task model,
its valence and arousal outputs), with a dynamic batch axis, and the :class:`ModelSpec` a consumer
needs to feed it: the face crop's side, the channel order and layout, the pixel scale, the mean and
std of the normalisation, how faces were cropped, and the class names. ONNX keeps it in the model's
``metadata_props``, TorchScript in an ``_extra_files`` entry (``cfer_metadata.json``), both as the
same flat string keys (:meth:`ModelSpec.to_metadata`), readable without cfer::

    import onnxruntime
    session = onnxruntime.InferenceSession("model.onnx")
    session.get_modelmeta().custom_metadata_map["class_names"]   # '["happy", "sad", ...]'

Formats are looked up by name in :data:`EXPORT_FORMATS` (``onnx``, ``torchscript``); each entry holds
everything about its format: file suffixes, the writer and the runtime loader. ONNX export uses
``torch.onnx.export`` with ``dynamo=True`` (which needs the ``onnxscript`` package), TorchScript
``torch.jit.trace`` (PyTorch deprecates TorchScript; its warnings are silenced here, since the
format is what a consumer asked for).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cfer.io import atomic_write_bytes
from cfer.registry import Registry

logger = logging.getLogger(__name__)

__all__ = [
    "EXPORT_FORMATS",
    "METADATA_FORMAT",
    "ExportFormat",
    "ExportedModel",
    "ModelSpec",
    "Outputs",
    "export_format_of",
    "export_model",
    "load_exported",
    "max_output_difference",
]

METADATA_FORMAT = "cfer.ModelSpec/1"
"""Value of the ``format`` metadata key of an exported file; bumped when the keys change."""

INPUT_NAME = "images"
LOGITS_NAME = "logits"
AFFECT_NAME = "valence_arousal"
_EXTRA_FILE = "cfer_metadata.json"

Outputs = tuple[Tensor, Tensor | None]
"""``(logits (B, num_classes), regression outputs (B, R) or None)``."""


@dataclass(frozen=True)
class ModelSpec:
    """What a consumer of a trained classifier needs: its classes, its outputs and its input contract.

    The input is a float32 batch ``(B, 3, input_size, input_size)`` (``layout`` NCHW) of square face
    crops, RGB, each pixel ``(value * pixel_scale - mean) / std`` per channel, ``value`` in 0..255.
    A face is cropped as ``cfer preprocess`` and the data readers crop training faces: its 5 MTCNN
    landmarks are warped onto ArcFace's template (:func:`cfer.data.faces.align_face`) with
    ``face_margin``, into an ``align_size`` square (``input_size`` if larger), which is then resized
    to ``input_size`` (bilinear, antialiased).
    """

    class_names: tuple[str, ...]  # one per output logit, in output order
    input_size: int  # side of the square face crop, in pixels
    mean: tuple[float, float, float]  # per channel, of pixels scaled to [0, 1]
    std: tuple[float, float, float]
    face_margin: float  # room around the template face, as a fraction of ArcFace's tight crop
    align_size: int  # side of the aligned crop before it is resized to input_size
    regression_outputs: tuple[str, ...] = ()  # names of the bounded outputs beside the logits, e.g. valence, arousal
    channel_order: str = "RGB"
    layout: str = "NCHW"
    pixel_scale: float = 1 / 255  # uint8 value -> [0, 1]
    resize: str = "bilinear, antialiased"  # how the aligned crop is brought to input_size
    alignment: str = "MTCNN 5 landmarks onto ArcFace's 112-px template, similarity transform"
    backbone: str = ""  # timm model name
    phase: str = ""  # basic, incremental, distill ... (the checkpoint's metadata)

    def __post_init__(self) -> None:
        if self.input_size < 8:
            raise ValueError(f"input_size must be at least 8 pixels, got {self.input_size}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 channels, got {self.mean} and {self.std}")
        if not self.class_names:
            raise ValueError("a model spec needs its class names")

    def normalise(self, images: Tensor) -> Tensor:
        """Crops as the model's input.

        Args:
            images: ``(B, 3, S, S)`` RGB, uint8 (or float in 0..255).

        Returns:
            ``(B, 3, S, S)`` float32, ``(value * pixel_scale - mean) / std`` per channel.
        """
        mean = torch.tensor(self.mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
        return (images.float() * self.pixel_scale - mean) / std

    @property
    def has_regression(self) -> bool:
        """Whether the model has bounded regression outputs (valence and arousal)."""
        return bool(self.regression_outputs)

    def to_metadata(self) -> dict[str, str]:
        """Flat string keys for ONNX ``metadata_props`` and TorchScript extra files.

        ``format`` is :data:`METADATA_FORMAT` as plain text; every other value is JSON: one key per
        field, and ``input_name`` and ``output_names`` of the exported graph.
        """
        entries = {field.name: json.dumps(getattr(self, field.name)) for field in dataclasses.fields(self)}
        outputs = [LOGITS_NAME] + ([AFFECT_NAME] if self.has_regression else [])
        return {"format": METADATA_FORMAT, **entries, "input_name": json.dumps(INPUT_NAME),
                "output_names": json.dumps(outputs)}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str = "metadata") -> ModelSpec:
        """Reads what :meth:`to_metadata` wrote.

        Raises:
            ValueError: If ``metadata`` is not a cfer model spec; the message names ``source``.
        """
        if metadata.get("format") != METADATA_FORMAT:
            raise ValueError(f"{source} holds no cfer model spec (metadata format {metadata.get('format')!r}, "
                             f"expected {METADATA_FORMAT!r}); export it with `cfer export`")
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            if field.name in metadata:
                value = json.loads(metadata[field.name])
                values[field.name] = tuple(value) if isinstance(value, list) else value
        return cls(**values)


class _Exported(nn.Module):
    """The classifier as exported: normalised images in, logits (and regression outputs) out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.multitask = getattr(model, "regressor", None) is not None

    def forward(self, images: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        if self.multitask:
            return self.model.forward_multitask(images)
        return self.model(images)


@dataclass(frozen=True)
class ExportedModel:
    """An exported file loaded for inference.

    Attributes:
        spec: The input contract and outputs read from the file.
        run: Maps a float32 ``(B, 3, S, S)`` batch, normalised as ``spec`` says, to :data:`Outputs`
            (CPU tensors).
        format: The export format's name.
    """

    spec: ModelSpec
    run: Callable[[Tensor], Outputs]
    format: str


@dataclass(frozen=True)
class ExportFormat:
    """Everything about one export format."""

    suffixes: tuple[str, ...]  # file suffixes recognised as this format, the first one conventional
    write: Callable[[nn.Module, ModelSpec, Path], None]  # writes the model and spec to a file
    load: Callable[[Path, int | None], ExportedModel]  # loads a file for inference, on so many CPU threads


EXPORT_FORMATS: Registry[ExportFormat] = Registry("export format", normalize=str.lower)
"""Export formats by name: ``onnx`` and ``torchscript``."""


def export_model(model: nn.Module, spec: ModelSpec, path: str | Path, format: str = "onnx") -> Path:
    """Writes ``model`` with ``spec`` in its metadata to ``path``, atomically.

    Args:
        model: An :class:`~cfer.models.ExpressionClassifier` (any module mapping ``(B, 3, S, S)``
            images to logits; with a ``regressor``, ``forward_multitask`` is exported).
        spec: Its input contract; ``spec.regression_outputs`` must match the model's regressor.
        path: Destination file; parent folders are created.
        format: A name of :data:`EXPORT_FORMATS`.

    Returns:
        The path written.

    Raises:
        KeyError: If ``format`` is unknown; the message lists the known ones.
        ValueError: If ``spec`` does not describe ``model``'s outputs.
    """
    entry = EXPORT_FORMATS[format]
    wrapper = _Exported(model).eval()
    _check_spec(wrapper, spec)
    path = Path(path)
    with torch.inference_mode(False), torch.no_grad():
        entry.write(wrapper, spec, path)
    logger.info("exported %s (%d classes, %d px input) to %s", format, len(spec.class_names), spec.input_size, path)
    return path


def max_output_difference(model: nn.Module, exported: ExportedModel, images: Tensor) -> float:
    """The largest absolute difference between ``model``'s outputs and an exported copy's, on the same input.

    Args:
        model: The PyTorch model that was exported.
        exported: The exported file, loaded.
        images: ``(B, 3, S, S)`` float32 input, normalised as ``exported.spec`` says.

    Returns:
        The maximum over the logits and, for a multi-task model, the regression outputs.
    """
    with torch.no_grad():
        reference = _Exported(model).eval()(images)
    reference = reference if isinstance(reference, tuple) else (reference, None)
    outputs = exported.run(images)
    differences = [float((got.float() - want.float().cpu()).abs().max()) for got, want in zip(outputs, reference)
                   if got is not None and want is not None]
    return max(differences)


def export_format_of(path: str | Path) -> str:
    """The name of the export format whose suffix ``path`` has.

    Raises:
        ValueError: If no format has that suffix; the message lists the known suffixes.
    """
    suffix = Path(path).suffix.lower()
    for name, entry in EXPORT_FORMATS.items():
        if suffix in entry.suffixes:
            return name
    known = {name: list(entry.suffixes) for name, entry in EXPORT_FORMATS.items()}
    raise ValueError(f"{path}: unknown export file suffix {suffix!r}; known: {known}")


def load_exported(path: str | Path, threads: int | None = None) -> ExportedModel:
    """Loads a file written by :func:`export_model` for CPU inference.

    Args:
        path: An ``.onnx`` or TorchScript (``.pt``, ``.ts``, ``.torchscript``) file.
        threads: ONNX Runtime's intra-op CPU threads; None keeps its default. TorchScript runs on
            PyTorch's threads (``torch.set_num_threads``).

    Returns:
        The spec and a callable that runs the model.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If its suffix is unknown or it holds no cfer model spec.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model {str(path)!r} does not exist")
    return EXPORT_FORMATS[export_format_of(path)].load(path, threads)


def _check_spec(wrapper: _Exported, spec: ModelSpec) -> None:
    outputs = getattr(wrapper.model, "num_classes", None)
    if isinstance(outputs, int) and outputs != len(spec.class_names):
        raise ValueError(f"the spec names {len(spec.class_names)} classes for a model with {outputs} outputs")
    if wrapper.multitask != spec.has_regression:
        raise ValueError(f"the spec lists regression outputs {list(spec.regression_outputs)}, but the model "
                         f"{'has' if wrapper.multitask else 'has no'} regression head")


def _example(spec: ModelSpec, batch: int = 2) -> Tensor:
    # batch 2: torch.export specialises a dimension whose example size is 0 or 1
    return torch.zeros(batch, 3, spec.input_size, spec.input_size)


# --- ONNX ----------------------------------------------------------------------------------------


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The ONNX exporter's optimiser logs every pass at INFO (hundreds of lines); keep only its warnings."""
    loggers = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript")]
    levels = [item.level for item in loggers]
    for item in loggers:
        item.setLevel(max(item.getEffectiveLevel(), logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.export's own notices, not the caller's
            yield
    finally:
        for item, level in zip(loggers, levels):
            item.setLevel(level)


def _write_onnx(wrapper: nn.Module, spec: ModelSpec, path: Path) -> None:
    output_names = [LOGITS_NAME] + ([AFFECT_NAME] if spec.has_regression else [])
    with _quiet_exporter():
        program = torch.onnx.export(wrapper, (_example(spec),), None, dynamo=True, verbose=False,
                                    input_names=[INPUT_NAME], output_names=output_names,
                                    dynamic_shapes=({0: torch.export.Dim("batch")},))
    proto = program.model_proto
    for key, value in spec.to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f"cfer expression classifier ({spec.backbone or 'timm backbone'}); see metadata_props"
    atomic_write_bytes(path, proto.SerializeToString())


def _load_onnx(path: Path, threads: int | None) -> ExportedModel:
    import onnxruntime
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, InvalidGraph, InvalidProtobuf

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except (Fail, InvalidArgument, InvalidGraph, InvalidProtobuf) as error:  # onnxruntime's errors for bad files
        raise ValueError(f"{path} is not a readable ONNX model ({error})") from None
    spec = ModelSpec.from_metadata(session.get_modelmeta().custom_metadata_map, source=str(path))

    def run(images: Tensor) -> Outputs:
        outputs = session.run(None, {INPUT_NAME: images.detach().cpu().float().numpy()})
        affect = torch.from_numpy(outputs[1]) if len(outputs) > 1 else None
        return torch.from_numpy(outputs[0]), affect

    return ExportedModel(spec, run, "onnx")


# --- TorchScript ---------------------------------------------------------------------------------


def _write_torchscript(wrapper: nn.Module, spec: ModelSpec, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.trace is deprecated": see the module docstring
        # not torch.jit.freeze: folding the batch norms into the convolutions moves logits by up to 7e-5
        traced = torch.jit.trace(wrapper, _example(spec))
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={_EXTRA_FILE: json.dumps(spec.to_metadata())})
    atomic_write_bytes(path, buffer.getvalue())


def _load_torchscript(path: Path, threads: int | None) -> ExportedModel:
    extra = {_EXTRA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except RuntimeError as error:
        raise ValueError(f"{path} is not a readable TorchScript model ({error})") from None
    metadata = json.loads(extra[_EXTRA_FILE] or "{}")
    spec = ModelSpec.from_metadata(metadata, source=str(path))

    def run(images: Tensor) -> Outputs:
        with torch.inference_mode():
            outputs = module(images.float())
        return (outputs[0], outputs[1]) if isinstance(outputs, tuple) else (outputs, None)

    return ExportedModel(spec, run, "torchscript")


EXPORT_FORMATS.register("onnx", ExportFormat((".onnx",), _write_onnx, _load_onnx))
EXPORT_FORMATS.register("torchscript", ExportFormat((".pt", ".ts", ".torchscript"), _write_torchscript,
                                                    _load_torchscript))
