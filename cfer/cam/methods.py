"""Class activation map methods by name: a registry over pytorch-grad-cam's implementations.

The methods themselves are pytorch-grad-cam's (github.com/jacobgil/pytorch-grad-cam); this module
only names them, so that configs and the command line can pick one with a string, and builds them
with the keyword arguments each one needs.

======================  ==========================================================================
name                    method
======================  ==========================================================================
``gradcam``             Grad-CAM (Selvaraju et al. 2017): channels weighted by mean gradients
``gradcam++``           Grad-CAM++ (Chattopadhay et al. 2018): second-order gradient weights
``xgradcam``            XGrad-CAM (Fu et al. 2020): gradients weighted by normalised activations
``hirescam``            HiResCAM (Draelos & Carin 2020): element-wise gradient x activation
``gradcamelementwise``  Grad-CAM with element-wise weights, then ReLU
``layercam``            LayerCAM (Jiang et al. 2021): positive gradients x activations
``eigencam``            Eigen-CAM (Muhammad & Yeasin 2020): first principal component; class-blind
``eigengradcam``        Eigen-CAM of gradient x activation: class-aware
``kpcacam``             Eigen-CAM with kernel PCA; class-blind
``scorecam``            Score-CAM (Wang et al. 2020): one forward pass per channel; slow on a CPU
``ablationcam``         Ablation-CAM (Desai & Ramaswamy 2020): one pass per channel; slow on a CPU
``randomcam``           Random weights: a baseline that any score should beat
======================  ==========================================================================

Names are matched without regard to case, spaces, ``-`` or ``_``: ``"GradCAM++"``,
``"grad-cam++"`` and ``"gradcam++"`` are one method.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pytorch_grad_cam import (
    KPCA_CAM,
    AblationCAM,
    EigenCAM,
    EigenGradCAM,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    RandomCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.ablation_layer import AblationLayer
from pytorch_grad_cam.base_cam import BaseCAM
from torch import Tensor, nn

from cfer.registry import Registry

__all__ = [
    "CAM_METHODS",
    "CLASS_BLIND_METHODS",
    "CamFactory",
    "canonical_cam_name",
    "create_cam",
    "register_cam_method",
]

CamFactory = Callable[[nn.Module, list[nn.Module], Callable[[Tensor], Tensor] | None], BaseCAM]
"""Builds a CAM from ``(model, target_layers, reshape_transform)``."""


def _simple(cam_class: type[BaseCAM]) -> CamFactory:
    def build(model: nn.Module, target_layers: list[nn.Module], reshape_transform=None) -> BaseCAM:
        return cam_class(model, target_layers, reshape_transform=reshape_transform)

    return build


def _ablation(model: nn.Module, target_layers: list[nn.Module], reshape_transform=None) -> BaseCAM:
    # AblationCAM's default AblationLayer is one instance shared by every AblationCAM ever built,
    # and it keeps state between calls; each CAM gets its own.
    return AblationCAM(model, target_layers, reshape_transform=reshape_transform, ablation_layer=AblationLayer())


CLASS_BLIND_METHODS: frozenset[str] = frozenset({"eigencam", "kpcacam"})
"""Methods whose map does not depend on the target class: every class gets the same map, so
compound-vs-component similarity is 1 by construction and means nothing for them."""


def canonical_cam_name(name: str) -> str:
    """The registry key of a method name: lower case, without spaces, ``-`` or ``_``.

    Args:
        name: E.g. ``"GradCAM++"`` or ``"grad-cam"``.

    Returns:
        E.g. ``"gradcam++"`` or ``"gradcam"``.
    """
    return "".join(name.lower().replace("-", " ").replace("_", " ").split())


CAM_METHODS: Registry[CamFactory] = Registry("CAM method", normalize=canonical_cam_name)
"""Every CAM method by canonical name; add one with :func:`register_cam_method`."""


def register_cam_method(name: str, factory: CamFactory) -> None:
    """Makes a CAM method available to :func:`create_cam` by name.

    Args:
        name: The method's name; stored in canonical form (see :func:`canonical_cam_name`).
        factory: Builds the CAM from ``(model, target_layers, reshape_transform)``.

    Raises:
        ValueError: If the name is taken.
    """
    CAM_METHODS.register(name, factory)


for _name, _factory in {
    "gradcam": _simple(GradCAM),
    "gradcam++": _simple(GradCAMPlusPlus),
    "xgradcam": _simple(XGradCAM),
    "hirescam": _simple(HiResCAM),
    "gradcamelementwise": _simple(GradCAMElementWise),
    "layercam": _simple(LayerCAM),
    "eigencam": _simple(EigenCAM),
    "eigengradcam": _simple(EigenGradCAM),
    "kpcacam": _simple(KPCA_CAM),
    "scorecam": _simple(ScoreCAM),
    "ablationcam": _ablation,
    "randomcam": _simple(RandomCAM),
}.items():
    register_cam_method(_name, _factory)


def create_cam(
    name: str,
    model: nn.Module,
    target_layers: Sequence[nn.Module],
    reshape_transform: Callable[[Tensor], Tensor] | None = None,
) -> BaseCAM:
    """Builds a pytorch-grad-cam CAM by name.

    Prefer :class:`cfer.cam.CamExplainer`, which also finds the target layer, normalises images,
    takes class names and releases its hooks; this is the bare factory under it.

    Args:
        name: A method name (see :data:`CAM_METHODS`); case, spaces, ``-`` and ``_`` are ignored.
        model: The classifier; maps (B, 3, H, W) images to (B, num_classes) logits.
        target_layers: Modules whose (B, C, h, w) outputs the map is computed from.
        reshape_transform: Turns a non-CNN layer output (e.g. ViT tokens) into (B, C, h, w).

    Returns:
        The CAM; it holds forward hooks on ``target_layers`` until
        ``cam.activations_and_grads.release()``.

    Raises:
        KeyError: If the name is unknown; the message lists the known names.
    """
    return CAM_METHODS[name](model, list(target_layers), reshape_transform)
