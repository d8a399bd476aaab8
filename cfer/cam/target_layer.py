"""Which layer a class activation map is computed from: found automatically, or named.

Grad-CAM and its relatives weight the channels of one convolutional feature map; the usual choice is
the last one before global pooling, which has the most semantic channels at the coarsest useful
resolution. Every timm CNN computes that map in ``forward_features``, so :func:`find_target_layer`
runs ``forward_features`` once on a dummy batch with forward hooks on every module and returns the
module whose output *is* that map. Several nested modules can return the same tensor (``layer4``,
``layer4[-1]``, an in-place ReLU inside it); the outermost one is taken, then followed into a
``Sequential``'s last child while that child returns the same tensor, which gives the names used by
pytorch-grad-cam's examples (``layer4.1`` for ResNet, ``bn2`` for EfficientNet, ``stages.3`` for
ConvNeXt, ``features.norm5`` for DenseNet).
"""

from __future__ import annotations

import difflib
import logging

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

__all__ = ["find_target_layer", "resolve_target_layer"]


def find_target_layer(model: nn.Module, input_size: int = 64, min_map_size: int = 1) -> str:
    """Finds the module that outputs a CNN's last feature map before global pooling.

    Args:
        model: A timm model, a model with a timm ``backbone`` attribute (such as
            :class:`cfer.models.ExpressionClassifier`), or any CNN classifier; for a model without
            ``forward_features`` the last module with a 4-D output in the forward pass is taken.
        input_size: Side of the images to explain; a dummy (1, 3, input_size, input_size) batch is
            run through the model.
        min_map_size: Smallest side, in cells, of a useful map. A stride-32 CNN's last map is 2 x 2
            on 64-pixel faces, too coarse to say which facial region a class uses; with
            ``min_map_size=4`` the last stage of timm's ``feature_info`` whose map is at least 4 x 4
            is taken instead (stride 16 at 64 pixels). 1 always takes the last stage.

    Returns:
        The module's dotted name in ``model.named_modules()``, e.g. ``"backbone.bn2"``.

    Raises:
        ValueError: If the feature map is not (B, C, h, w), e.g. for a vision transformer, whose
            target layer and ``reshape_transform`` must be given explicitly.
    """
    names = {module: name for name, module in model.named_modules() if name}
    finished: list[tuple[str, Tensor]] = []

    def record(module: nn.Module, inputs: object, output: object) -> None:
        if isinstance(output, Tensor):
            finished.append((names[module], output))

    handles = [module.register_forward_hook(record) for module in names]
    was_training = model.training
    device = next(model.parameters()).device
    # Eval mode: a BatchNorm in training mode refuses a batch of one with a 1x1 map.
    model.eval()
    try:
        with torch.no_grad():
            dummy = torch.randn(1, 3, input_size, input_size, generator=torch.Generator().manual_seed(0)).to(device)
            features_model = _features_model(model)
            if features_model is not None:
                feature_map = features_model.forward_features(dummy)
            else:
                model(dummy)
                four_d = [output for _, output in finished if output.dim() == 4]
                if not four_d:
                    raise ValueError("no module of the model outputs a (B, C, h, w) feature map")
                feature_map = four_d[-1]
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not isinstance(feature_map, Tensor) or feature_map.dim() != 4:
        shape = tuple(feature_map.shape) if isinstance(feature_map, Tensor) else type(feature_map).__name__
        raise ValueError(
            f"the model's feature map has shape {shape}, not (B, C, h, w): pass target_layer and a "
            "reshape_transform (pytorch_grad_cam.utils.reshape_transforms) explicitly"
        )
    if min(feature_map.shape[-2:]) < min_map_size:
        finer = _last_stage_of_size(model, finished, min_map_size)
        if finer is not None:
            feature_map = finer
        else:
            logger.warning("no stage has a map of at least %d x %d at %d pixels; taking the last one (%s)",
                           min_map_size, min_map_size, input_size, tuple(feature_map.shape[-2:]))
    candidates = [name for name, output in finished if output is feature_map]
    if not candidates:
        # forward_features ended with a functional op: the closest module is the last one that
        # produced a map of the same shape.
        candidates = [name for name, output in finished if output.shape == feature_map.shape][-1:]
        if not candidates:
            raise ValueError("no module outputs the model's final feature map; pass target_layer explicitly")
    modules = dict(model.named_modules())
    # nn.Identity passes its input through, so it "outputs" the map without computing it.
    computing = [name for name in candidates if not isinstance(modules[name], nn.Identity)] or candidates
    depth = min(name.count(".") for name in computing)
    # Among the outermost candidates, the one that finished last is closest to the pooling.
    chosen = [name for name in computing if name.count(".") == depth][-1]
    while isinstance(modules[chosen], nn.Sequential) and len(modules[chosen]) > 0:
        last_child = f"{chosen}.{list(modules[chosen].named_children())[-1][0]}"
        if last_child not in candidates:
            break
        chosen = last_child
    logger.debug("target layer %s, feature map %s", chosen, tuple(feature_map.shape))
    return chosen


def resolve_target_layer(
    model: nn.Module, target_layer: str | nn.Module | None = None, input_size: int = 64, min_map_size: int = 1
) -> tuple[str, nn.Module]:
    """The target layer of a CAM: found automatically, or the given one checked.

    Args:
        model: The classifier.
        target_layer: None to call :func:`find_target_layer`; a dotted module name such as
            ``"backbone.layer4.1"``; or a module of ``model``.
        input_size: Side of the images to explain, for :func:`find_target_layer`.
        min_map_size: Smallest useful map side, for :func:`find_target_layer`.

    Returns:
        ``(name, module)``, the name being the module's path in ``model.named_modules()``.

    Raises:
        KeyError: If a name does not name a module of ``model``; the message lists close names.
        ValueError: If a module is not part of ``model``, or if no layer can be found.
    """
    modules = dict(model.named_modules())
    if target_layer is None:
        name = find_target_layer(model, input_size, min_map_size)
        return name, modules[name]
    if isinstance(target_layer, nn.Module):
        for name, module in modules.items():
            if module is target_layer:
                return name, module
        raise ValueError(f"target layer {type(target_layer).__name__} is not a module of the model")
    if target_layer not in modules or not target_layer:
        close = difflib.get_close_matches(target_layer, [name for name in modules if name], n=8, cutoff=0.5)
        raise KeyError(
            f"the model has no module {target_layer!r}; close names: {close}; "
            "see model.named_modules() for all, or pass None to find the last feature layer"
        )
    return target_layer, modules[target_layer]


def _last_stage_of_size(model: nn.Module, finished: list[tuple[str, Tensor]], min_map_size: int) -> Tensor | None:
    """The output of the last timm ``feature_info`` stage whose map is at least min_map_size wide."""
    features_model = _features_model(model)
    stages = getattr(features_model, "feature_info", None)
    if features_model is None or stages is None:
        # Without stages, the last module whose output is large enough.
        large = [output for _, output in finished if output.dim() == 4 and min(output.shape[-2:]) >= min_map_size]
        return large[-1] if large else None
    prefix = next((f"{name}." for name, module in model.named_modules() if module is features_model and name), "")
    outputs = dict(finished)
    stage_names = [prefix + name for name in _stage_modules(stages)]
    large = [outputs[name] for name in stage_names
             if name in outputs and outputs[name].dim() == 4 and min(outputs[name].shape[-2:]) >= min_map_size]
    return large[-1] if large else None


def _stage_modules(feature_info: object) -> list[str]:
    # timm keeps feature_info as a list of dicts on models and as a FeatureInfo on feature wrappers.
    if hasattr(feature_info, "module_name"):
        return list(feature_info.module_name())
    return [stage["module"] for stage in feature_info]


def _features_model(model: nn.Module) -> nn.Module | None:
    """The timm model inside ``model`` whose ``forward_features`` gives the unpooled map."""
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, nn.Module) and hasattr(backbone, "forward_features"):
        return backbone
    if hasattr(model, "forward_features"):
        return model
    return None
