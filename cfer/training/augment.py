"""Batch preprocessing: uint8 to normalised float, and the paper's augmentation, on any device.

Maiden & Nakisa (2023) augment with horizontal flips, small rotations, zoom and translation. The
random transforms of ``torchvision.transforms.v2`` draw one set of parameters per call, so applied to
a batch they would move every image the same way; :class:`BatchAugment` draws per image and warps the
whole batch with one ``affine_grid``/``grid_sample`` call instead. The deterministic steps (dtype
conversion, normalisation) are torchvision's own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.transforms import v2

__all__ = ["AugmentConfig", "BatchAugment", "make_preprocess"]


@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentation of training batches, as in the paper."""

    enabled: bool = True  # False trains on the images as they are
    flip: bool = True  # mirror half of the images horizontally
    rotation: float = 10.0  # largest rotation, in degrees either way
    zoom: float = 0.1  # largest relative zoom in or out
    translate: float = 0.1  # largest shift, as a fraction of the image side


class BatchAugment(nn.Module):
    """Per-image random flip, rotation, zoom and translation of a float batch.

    Args:
        config: The augmentation ranges.
        generator: Source of randomness; give one to make runs (and resumed runs) repeatable.
    """

    def __init__(self, config: AugmentConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        self.generator = generator

    def forward(self, images: Tensor) -> Tensor:
        """Augments a batch.

        Args:
            images: (B, C, H, W) float images.

        Returns:
            (B, C, H, W) augmented images; edge pixels repeat where the warp looks outside.
        """
        if not self.config.enabled:
            return images
        batch = images.shape[0]

        def uniform(limit: float) -> Tensor:
            draw = torch.rand(batch, generator=self.generator) * 2.0 - 1.0
            return draw * limit

        angle = uniform(math.radians(self.config.rotation))
        scale = 1.0 + uniform(self.config.zoom)
        shift_x, shift_y = uniform(2.0 * self.config.translate), uniform(2.0 * self.config.translate)
        flip = torch.ones(batch)
        if self.config.flip:
            flip = torch.where(torch.rand(batch, generator=self.generator) < 0.5, -1.0, 1.0)
        # affine_grid maps output coordinates to input ones: the inverse of the zoom, hence / scale.
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack(
            [torch.stack([flip * cos, -sin, shift_x], 1), torch.stack([flip * sin, cos, shift_y], 1)], 1
        ).to(device=images.device, dtype=images.dtype)
        grid = nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
        return nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def make_preprocess(mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """uint8 (B, 3, H, W) batches to float normalised the way the backbone's weights expect."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))])
