"""Models: timm backbones with classifier heads that grow by whole classes."""

from cfer.models.backbones import (
    PACKAGED_WEIGHTS,
    PRETRAINED_SOURCES,
    PackagedWeights,
    WeightsUnavailableError,
    backbone_data_config,
    create_backbone,
    create_imagenet_classifier,
    feature_dim,
    load_backbone_weights,
    register_packaged_weights,
)
from cfer.models.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from cfer.models.classifier import (
    ExpressionClassifier,
    ModelConfig,
    block_groups,
    create_model,
    freeze_backbone,
    trainable_parameter_count,
)
from cfer.models.heads import HEADS, ExpandableHead, LinearHead, PaperHead, create_head, register_head

__all__ = [
    "CHECKPOINT_FORMAT",
    "HEADS",
    "PACKAGED_WEIGHTS",
    "PRETRAINED_SOURCES",
    "ExpandableHead",
    "ExpressionClassifier",
    "LinearHead",
    "ModelConfig",
    "PackagedWeights",
    "PaperHead",
    "WeightsUnavailableError",
    "backbone_data_config",
    "block_groups",
    "create_backbone",
    "create_head",
    "create_imagenet_classifier",
    "create_model",
    "feature_dim",
    "freeze_backbone",
    "load_backbone_weights",
    "load_checkpoint",
    "register_head",
    "register_packaged_weights",
    "save_checkpoint",
    "trainable_parameter_count",
]
