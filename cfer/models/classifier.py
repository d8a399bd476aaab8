"""The expression classifier: a timm backbone, a growing head, and block-wise backbone freezing.

Maiden & Nakisa (2023), "Complex Facial Expression Recognition Using Deep Knowledge Distillation
of Basic Features", fine-tune an ImageNet-pretrained CNN on the six basic expressions, then add
compound expressions one output unit at a time. The reference (github.com/AngusMaiden/complex-FER,
``src/models/train.py``) first trains the head on a frozen ResNet50V2, then unfreezes the layers
from index ``basic_frozen_layers = 86`` on (the last two of the four residual stages) with every
``BatchNormalization`` layer kept frozen, and trains the continual stages from layer
``cont_frozen_layers = 154`` on (the last stage). :func:`freeze_backbone` expresses such
boundaries as a number of timm block groups, so they carry over to other backbone families.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from cfer.core.trunk import block_groups
from cfer.models.backbones import backbone_data_config, create_backbone, feature_dim
from cfer.models.heads import ExpandableHead, create_head

logger = logging.getLogger(__name__)

__all__ = [
    "ExpressionClassifier",
    "ModelConfig",
    "block_groups",
    "create_model",
    "freeze_backbone",
    "trainable_parameter_count",
]

# timm pools that return one vector per image, which the heads need
_VECTOR_POOLS = ("avg", "max", "avgmax", "catavgmax")


@dataclass(frozen=True)
class ModelConfig:
    """Backbone, weights and head of an :class:`ExpressionClassifier`."""

    backbone: str = "efficientnet_lite0"  # timm model name (timm.list_models())
    pretrained: str = "imagenet"  # 'imagenet' (packaged or timm weights) or 'none' (random)
    weights: str | None = None  # local .safetensors/.pth state dict; overrides `pretrained`
    head: str = "paper"  # head registry name: 'paper' (512-32 sigmoid MLP) or 'linear'
    global_pool: str = "avg"  # 'avg', 'max', 'avgmax', 'catavgmax'; the reference max-pools
    dropout: float = 0.2  # dropout before each Linear layer of the head
    # last timm block groups trained in the fine-tuning stage (0: none, -1: all); the reference
    # trains the last 2 of ResNet50V2's 4 stages, i.e. output strides 16 and 32, which for
    # efficientnet_lite0 (groups: stem, 7 block stages) are the last 4 groups
    trainable_blocks: int = 4
    train_batchnorm: bool = False  # BatchNorm trains in unfrozen blocks; the reference freezes it
    regression_outputs: int = 0  # bounded (tanh) outputs beside the classes: 2 for valence and arousal


class ExpressionClassifier(nn.Module):
    """A timm backbone followed by a head whose output layer grows by whole classes.

    Satisfies :class:`strategies.protocols.GrowingClassifier`. A BatchNorm layer whose parameters
    are all frozen (see :func:`freeze_backbone`) stays in eval mode, using and keeping its running
    statistics, even after ``model.train()``: freezing a layer means freezing what it computes.

    Args:
        backbone: timm model built with ``num_classes=0`` (pooled features out).
        head: Head taking ``(batch, feature_dim(backbone))`` features.
        config: Config the model was built from; needed by
            :func:`cfer.models.checkpoint.save_checkpoint`.
    """

    def __init__(
        self, backbone: nn.Module, head: ExpandableHead, config: ModelConfig | None = None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.config = config
        outputs = config.regression_outputs if config is not None else 0
        # a multi-task model: bounded regression outputs (valence, arousal in [-1, 1]) on the same features;
        # initialised from a fork of the global random stream, so that adding them changes nothing of the
        # classes' training (dropout masks and every later draw stay those of the model without them)
        self.regressor: nn.Module | None = None
        if outputs > 0:
            with torch.random.fork_rng(devices=[]):
                self.regressor = nn.Sequential(nn.Linear(feature_dim(backbone), outputs), nn.Tanh())
        # train() below covers calls on this model; the hooks also cover code that switches the
        # backbone itself to training mode, as Avalanche's iCaRL does with its feature extractor.
        for submodule in backbone.modules():
            if isinstance(submodule, _BatchNorm):
                submodule.register_forward_pre_hook(_frozen_norm_stays_in_eval)

    @property
    def num_classes(self) -> int:
        """Current number of output units."""
        return self.head.num_classes

    @property
    def feature_dim(self) -> int:
        """Size of the pooled backbone features."""
        return feature_dim(self.backbone)

    @property
    def data_config(self) -> dict[str, Any]:
        """Input preprocessing the backbone expects (``mean``, ``std``, ``input_size`` ...).

        See :func:`cfer.models.backbones.backbone_data_config`.
        """
        return backbone_data_config(self.backbone)

    def add_classes(self, num_new: int, generator: torch.Generator | None = None) -> None:
        """Append ``num_new`` output units; old logits stay exactly the same.

        Args:
            num_new: Number of classes to add.
            generator: Random generator of the new (Glorot-uniform) weights; the global one if
                None.
        """
        self.head.add_classes(num_new, generator=generator)

    def l2_penalty(self) -> Tensor:
        """The head's L2 regularisation term (the paper's ``l2(1e-5)`` on the hidden kernels).

        Returns:
            Scalar tensor; zero for a head without regularised layers.
        """
        return self.head.l2_penalty()

    def features(self, images: Tensor) -> Tensor:
        """Pooled backbone features.

        Args:
            images: Normalised images, shape ``(batch, 3, height, width)``.

        Returns:
            Features, shape ``(batch, feature_dim)``.
        """
        return self.backbone(images)

    def forward(self, images: Tensor) -> Tensor:
        """Compute logits.

        Args:
            images: Images normalised as :attr:`data_config` says, shape
                ``(batch, 3, height, width)``.

        Returns:
            Logits, shape ``(batch, num_classes)``.
        """
        return self.head(self.features(images))

    def forward_multitask(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Logits and regression outputs from one pass of the backbone.

        Args:
            images: Normalised images, shape ``(batch, 3, height, width)``.

        Returns:
            ``(logits (batch, num_classes), outputs (batch, regression_outputs))``; outputs in [-1, 1].

        Raises:
            ValueError: If the model has no regression outputs (``ModelConfig.regression_outputs``).
        """
        features = self.features(images)
        return self.head(features), self._regressor()(features)

    def regress(self, images: Tensor) -> Tensor:
        """Regression outputs (valence, arousal in [-1, 1]), shape ``(batch, regression_outputs)``.

        Raises:
            ValueError: If the model has no regression outputs.
        """
        return self._regressor()(self.features(images))

    def _regressor(self) -> nn.Module:
        if self.regressor is None:
            raise ValueError("this model has no regression outputs; build it with ModelConfig(regression_outputs=2)")
        return self.regressor

    def train(self, mode: bool = True) -> ExpressionClassifier:
        """Set training mode, keeping frozen BatchNorm layers in eval mode.

        Args:
            mode: Training (True) or evaluation (False) mode.

        Returns:
            self
        """
        super().train(mode)
        if mode:
            _frozen_norms_to_eval(self)
        return self


def create_model(config: ModelConfig, num_classes: int) -> ExpressionClassifier:
    """Build an :class:`ExpressionClassifier` with every parameter trainable.

    Args:
        config: Backbone, weights and head.
        num_classes: Initial number of classes (6 basic expressions in the paper).

    Returns:
        The model, in training mode.

    Raises:
        ValueError: If ``config.global_pool`` does not pool to a vector.
    """
    if config.global_pool not in _VECTOR_POOLS:
        raise ValueError(
            f"global_pool {config.global_pool!r} does not pool to a feature vector; "
            f"known: {list(_VECTOR_POOLS)}"
        )
    backbone = create_backbone(
        config.backbone,
        pretrained=config.pretrained,
        weights=config.weights,
        global_pool=config.global_pool,
    )
    head = create_head(config.head, feature_dim(backbone), num_classes, dropout=config.dropout)
    return ExpressionClassifier(backbone, head, config)


def freeze_backbone(
    model: ExpressionClassifier,
    trainable_blocks: int | None,
    train_batchnorm: bool = False,
) -> None:
    """Train only the last ``trainable_blocks`` block groups of the backbone, in place.

    Sets ``requires_grad`` of every backbone parameter (calling it again redraws the boundary, so
    a stage can freeze more or less than the previous one). The head is left as it is. Frozen
    BatchNorm layers are switched to eval mode now, and :class:`ExpressionClassifier` keeps them
    there through ``train()``. This keeps module types and state-dict keys unchanged (unlike
    swapping in ``FrozenBatchNorm2d``), so checkpoints, teacher copies and optimizer parameter
    names stay the same across stages, and unfreezing is just ``requires_grad``.

    Args:
        model: Classifier whose ``backbone`` is a timm model.
        trainable_blocks: Number of last block groups (see :func:`block_groups`) to train; 0
            freezes the whole backbone; -1 or None trains all of it; larger than the number of
            groups trains all of it.
        train_batchnorm: Whether BatchNorm layers inside the trained groups train too (False, as
            the reference, keeps them frozen with their ImageNet statistics).

    Raises:
        ValueError: If ``trainable_blocks`` is below -1.
    """
    if trainable_blocks is not None and trainable_blocks < -1:
        raise ValueError(f"trainable_blocks must be >= -1 or None, got {trainable_blocks}")
    backbone = model.backbone
    groups = block_groups(backbone)
    if trainable_blocks is None or trainable_blocks == -1:
        trainable_blocks = len(groups)
    trainable_blocks = min(trainable_blocks, len(groups))
    trainable = {name for group in groups[len(groups) - trainable_blocks :] for name in group}
    for name, parameter in backbone.named_parameters():
        parameter.requires_grad_(name in trainable)
    if not train_batchnorm:
        for module in backbone.modules():
            if isinstance(module, _BatchNorm):
                for parameter in module.parameters(recurse=False):
                    parameter.requires_grad_(False)
    model.train(model.training)
    logger.info(
        "backbone: last %d of %d block groups trainable (%d parameters), batchnorm %s",
        trainable_blocks,
        len(groups),
        trainable_parameter_count(backbone),
        "trainable" if train_batchnorm else "frozen",
    )


def trainable_parameter_count(module: nn.Module) -> int:
    """Number of scalar parameters with ``requires_grad``.

    Args:
        module: Any module.

    Returns:
        The count.
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _is_frozen_norm(module: nn.Module) -> bool:
    # a BatchNorm without affine parameters cannot be marked frozen this way and keeps its mode
    parameters = list(module.parameters(recurse=False))
    return bool(parameters) and not any(p.requires_grad for p in parameters)


def _frozen_norm_stays_in_eval(module: nn.Module, inputs: tuple) -> None:
    if module.training and _is_frozen_norm(module):
        module.eval()


def _frozen_norms_to_eval(module: nn.Module) -> None:
    for submodule in module.modules():
        if isinstance(submodule, _BatchNorm) and _is_frozen_norm(submodule):
            submodule.eval()
