"""Class activation maps of a classifier by class name, for batches of images, with hooks released.

:class:`CamExplainer` is the one entry point for maps: it finds the target layer
(:mod:`cfer.cam.target_layer`), builds the method by name (:mod:`cfer.cam.methods`), normalises uint8
images the way the model expects, turns class names into pytorch-grad-cam targets, and, used as a
context manager, removes every hook it put on the model when the block ends, whatever happens in it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

import numpy as np
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import Tensor, nn

from cfer.cam.methods import canonical_cam_name, create_cam
from cfer.cam.target_layer import resolve_target_layer
from cfer.models.backbones import backbone_data_config
from cfer.training.augment import make_preprocess

logger = logging.getLogger(__name__)

__all__ = ["CamExplainer", "ClassTarget"]

ClassTarget = int | str | Callable[[Tensor], Tensor]
"""What a map explains: a class index, a class name, or a pytorch-grad-cam target callable that maps
one image's (num_classes,) logits to a scalar (e.g. ``ClassifierOutputSoftmaxTarget(3)``)."""


class CamExplainer:
    """Class activation maps of a classifier's classes, by name, on batches of images.

    Works with any model that maps (B, 3, H, W) images to (B, num_classes) logits: a
    :class:`cfer.models.ExpressionClassifier` of any phase (basic, grown incremental head, few-shot)
    or a plain timm classifier. The model's parameters may be frozen: the input is made to require
    gradients, so gradient-based methods see gradients at the target layer anyway.

    Use it in a ``with`` block, which releases the hooks and restores the model's training mode on
    exit (or call :meth:`close`)::

        with CamExplainer(model, class_names=classes, method="gradcam") as explainer:
            maps = explainer.class_maps(images, ["happily_surprised", "happy", "surprised"])

    Args:
        model: The classifier.
        class_names: Name of each output, in output order; needed to ask for classes by name.
        method: A CAM method name (:data:`cfer.cam.CAM_METHODS`), e.g. ``"gradcam"``, ``"GradCAM++"``.
        target_layer: None to find the last convolutional feature map automatically
            (:func:`cfer.cam.find_target_layer`), a dotted module name or a module of ``model``.
        preprocess: Turns uint8 (B, 3, H, W) batches into the model's float input; by default
            :func:`cfer.training.augment.make_preprocess` with the model's mean and std. Float
            images are taken as already preprocessed.
        batch_size: Images per CAM pass; bounds the memory.
        reshape_transform: For models whose target layer is not (B, C, h, w), e.g. ViTs; see
            ``pytorch_grad_cam.utils.reshape_transforms``.
        input_size: Side of the images that will be explained, for finding the target layer; None
            takes the model's default input size.
        min_map_size: When the target layer is found automatically, the smallest map side to
            accept (see :func:`cfer.cam.find_target_layer`); 1 takes the last stage.

    Attributes:
        target_layer_name: Dotted name of the layer the maps come from.
        class_names: As given, as a tuple, or None.

    Raises:
        KeyError: If ``method`` or a named ``target_layer`` is unknown.
        ValueError: If ``class_names`` does not have one name per output.
    """

    def __init__(
        self,
        model: nn.Module,
        class_names: Sequence[str] | None = None,
        method: str = "gradcam",
        target_layer: str | nn.Module | None = None,
        preprocess: Callable[[Tensor], Tensor] | None = None,
        batch_size: int = 32,
        reshape_transform: Callable[[Tensor], Tensor] | None = None,
        input_size: int | None = None,
        min_map_size: int = 1,
    ) -> None:
        self.model = model
        self.class_names = tuple(class_names) if class_names is not None else None
        self.method = canonical_cam_name(method)
        self.batch_size = batch_size
        self._was_training = model.training
        if input_size is None:
            input_size = int(_data_config(model)["input_size"][-1])
        self.target_layer_name, layer = resolve_target_layer(model, target_layer, input_size, min_map_size)
        self.preprocess = preprocess if preprocess is not None else _default_preprocess(model)
        self._cam = create_cam(method, model, [layer], reshape_transform)
        # BaseCAM only sets requires_grad on the input when asked; asking always means a model
        # with a frozen backbone (a linear probe, a frozen teacher) still has gradients at the
        # target layer, which would otherwise be silently missing.
        self._cam.compute_input_gradient = True
        self._closed = False
        self._check_class_count()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Not BaseCAM.__exit__: it prints and swallows IndexError raised inside the block.
        self.close()

    def close(self) -> None:
        """Removes the hooks from the model and restores its training mode; idempotent."""
        if self._closed:
            return
        self._cam.activations_and_grads.release()
        self.model.train(self._was_training)
        self._closed = True

    @property
    def hook_count(self) -> int:
        """Hooks this explainer holds on the model (0 once closed)."""
        return len(self._cam.activations_and_grads.handles)

    def class_index(self, target: int | str) -> int:
        """The output index of a class given by index or name.

        Raises:
            KeyError: If the model has no such class; the message lists its classes.
            IndexError: If an index is out of range.
        """
        if isinstance(target, str):
            if self.class_names is None:
                raise KeyError(f"class {target!r} asked by name, but the explainer was given no class_names")
            if target not in self.class_names:
                raise KeyError(f"the model has no class {target!r}; its classes are {list(self.class_names)}")
            return self.class_names.index(target)
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
            raise TypeError(f"a class is an int index or a str name, got {type(target).__name__}")
        count = self._num_outputs()
        if count is not None and not 0 <= int(target) < count:
            raise IndexError(f"class index {target} is out of range for a model with {count} outputs")
        return int(target)

    def __call__(
        self, images: Tensor, targets: ClassTarget | Sequence[ClassTarget] | None = None
    ) -> np.ndarray:
        """Computes one map per image.

        Args:
            images: (B, 3, H, W) uint8 images, or float images already preprocessed for the model.
            targets: One target per image, or one for all; None explains each image's predicted class.

        Returns:
            (B, H, W) float32 maps at the input resolution, each scaled to [0, 1] by
            pytorch-grad-cam (an all-zero map stays zero).

        Raises:
            RuntimeError: If the explainer was closed.
            ValueError: If the number of targets is not the number of images.
        """
        if self._closed:
            raise RuntimeError("this CamExplainer is closed; create a new one")
        inputs = self._inputs(images)
        cam_targets = self._cam_targets(targets, len(inputs))
        maps = []
        for start in range(0, len(inputs), self.batch_size):
            stop = start + self.batch_size
            batch_targets = None if cam_targets is None else cam_targets[start:stop]
            maps.append(self._cam(input_tensor=inputs[start:stop], targets=batch_targets))
        self._cam.activations_and_grads.clear()
        if not maps:
            return np.zeros((0, *images.shape[-2:]), dtype=np.float32)
        return np.concatenate(maps).astype(np.float32, copy=False)

    def class_maps(self, images: Tensor, classes: Sequence[int | str]) -> np.ndarray:
        """Maps of several classes on the same images.

        Args:
            images: (B, 3, H, W) uint8 or preprocessed float images.
            classes: K class names or indices.

        Returns:
            (B, K, H, W) float32 maps; ``[:, k]`` explains ``classes[k]``.

        Raises:
            KeyError: If a class is not one of the model's; the message lists the model's classes.
        """
        indices = [self.class_index(target) for target in classes]  # fail before any pass
        if not indices:
            return np.zeros((len(images), 0, *images.shape[-2:]), dtype=np.float32)
        # The images repeated once per class make one batch with one target per copy: a single
        # forward and backward pass for all classes instead of one pass each. In eval mode every
        # image is computed independently of the others in its batch, so the maps are the same.
        inputs = self._inputs(images)
        tiled = inputs.repeat(len(indices), *([1] * (inputs.dim() - 1)))
        targets = [index for index in indices for _ in range(len(inputs))]
        maps = self(tiled, targets)
        return maps.reshape(len(indices), len(inputs), *maps.shape[1:]).transpose(1, 0, 2, 3)

    def _inputs(self, images: Tensor) -> Tensor:
        if images.dim() != 4:
            raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
        inputs = self.preprocess(images) if images.dtype == torch.uint8 else images
        return inputs.to(next(self.model.parameters()).device)

    def _cam_targets(
        self, targets: ClassTarget | Sequence[ClassTarget] | None, count: int
    ) -> list[Callable[[Tensor], Tensor]] | None:
        if targets is None:
            return None
        if isinstance(targets, (int, str, np.integer)) or callable(targets):
            targets = [targets] * count
        if len(targets) != count:
            raise ValueError(f"got {len(targets)} targets for {count} images")
        return [target if callable(target) else ClassifierOutputTarget(self.class_index(target)) for target in targets]

    def _num_outputs(self) -> int | None:
        count = getattr(self.model, "num_classes", None)
        return int(count) if isinstance(count, int) else None

    def _check_class_count(self) -> None:
        count = self._num_outputs()
        if self.class_names is not None and count is not None and len(self.class_names) != count:
            self.close()
            raise ValueError(f"{len(self.class_names)} class names for a model with {count} outputs")

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.hook_count} hooks"
        return f"CamExplainer(method={self.method!r}, target_layer={self.target_layer_name!r}, {state})"


def _data_config(model: nn.Module) -> dict[str, Any]:
    return getattr(model, "data_config", None) or backbone_data_config(model)


def _default_preprocess(model: nn.Module) -> Callable[[Tensor], Tensor]:
    data_config = _data_config(model)
    return make_preprocess(data_config["mean"], data_config["std"])
