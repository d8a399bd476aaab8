"""Models: timm backbones with classifier heads that grow by whole classes."""

from cfer.models.heads import HEADS, ExpandableHead, LinearHead, PaperHead, create_head, expand_linear, register_head

__all__ = ["HEADS", "ExpandableHead", "LinearHead", "PaperHead", "create_head", "expand_linear", "register_head"]
