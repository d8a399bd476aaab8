"""Features from several depths of a frozen backbone, each kept as a coarse spatial grid.

A backbone's pooled output averages its last feature map over the whole face, so where a cue sits
(a furrow between the brows, the shape of the lips) is lost, and the middle layers, where such
local cues live (LayUP, Ahrens et al. 2024), are not read at all. :class:`MultiLayerFeatures`
concatenates the pooled output with inner modules' maps average-pooled to a small grid
(``blocks.4`` at 4 × 4 keeps a 4 × 4 layout of an aligned face), then standardises every column
with statistics fitted once, on the first data it sees (the basic classes' training images), so
that no group outweighs the others by its scale. A column that barely varies on those images (a
channel the basic expressions never switch on) has its standard deviation floored at a tenth of its
group's mean one: dividing by its own near-zero spread would turn the first face that does switch it
on (a compound) into a value of millions, which swamps every other column downstream (RanPAC's Gram
matrix grew 10⁶-fold at the first such class).

With ``memoize=True`` each distinct input's features are computed once: the backbone is frozen, and
a class-incremental stream shows the same test images after every step, so later steps cost a hash
of each image instead of a pass through the backbone.

Layers are named ``'module.path:grid'``; a negative index counts from the end of a module list, so
the default ``('blocks.-3:4', 'blocks.-2:2', 'blocks.-1:2')`` is the last three block stages of
any timm EfficientNet.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DEFAULT_LAYERS", "MIN_STD_RATIO", "MultiLayerFeatures", "parse_layer", "resolve_module"]

logger = logging.getLogger(__name__)

MIN_STD_RATIO = 0.1
"""A column's standard deviation is floored at this share of its group's mean standard deviation."""

DEFAULT_LAYERS: tuple[str, ...] = ("blocks.-3:4", "blocks.-2:2", "blocks.-1:2")
"""The last three block stages of a timm EfficientNet: the third-last at 4 × 4, the others at 2 × 2."""


def parse_layer(spec: str) -> tuple[str, int]:
    """Split ``'module.path:grid'`` into the path and the grid side.

    Raises:
        ValueError: If the text is not of that form or the grid is not a positive integer.
    """
    path, sep, grid = spec.rpartition(":")
    if not sep or not path or not grid.strip().isdigit() or int(grid) < 1:
        raise ValueError(f"layer {spec!r} is not 'module.path:grid' with a positive grid side, e.g. 'blocks.4:4' "
                         "or 'layer3:2'")
    return path.strip(), int(grid)


def resolve_module(root: nn.Module, path: str) -> nn.Module:
    """The submodule at a dotted path; an integer part indexes a module list (negative from its end).

    A root with a ``submodule(path)`` method (the tail of a backbone cut for a feature cache,
    :func:`cfer.core.trunk.split_backbone`) resolves the backbone's paths itself.

    Raises:
        ValueError: If a part names no child; the message lists the children there.
    """
    if callable(getattr(root, "submodule", None)):
        return root.submodule(path)
    module = root
    for part in path.split("."):
        children = dict(module.named_children())
        if part.lstrip("-").isdigit() and isinstance(module, (nn.Sequential, nn.ModuleList)) and len(module):
            index = int(part)
            if -len(module) <= index < len(module):
                module = module[index]
                continue
        elif part in children:
            module = children[part]
            continue
        raise ValueError(f"layer {path!r}: no module {part!r} there; its children are {sorted(children)} "
                         "(set the layers to modules of this backbone, e.g. 'layer3:2' for a ResNet)")
    return module


class MultiLayerFeatures(nn.Module):
    """A backbone's pooled features, then inner maps pooled to grids, standardised column by column.

    Args:
        backbone: Maps normalised images ``(batch, 3, H, W)`` to pooled features ``(batch, feature_dim)``;
            its modules at ``layers`` give maps ``(batch, channels, h, w)``. Never trained here.
        layers: ``'module.path:grid'`` per inner module (see :func:`parse_layer`).
        probe_size: Side of the blank image passed once to learn each module's channel count, unless
            ``backbone`` has an ``input_shape`` (the tail of a cut backbone reads activations).
        memoize: Keep each distinct input's raw features (keyed by a hash of its values; one row of
            ``dim`` floats per image seen) and serve them again. Rows computed in a batch of one are
            not kept: CPU kernels give a lone sample other last bits than a batch does.

    Attributes:
        dim: Size of the output, ``feature_dim + Σ channels · grid²``.
        group_sizes: Columns of each group, the pooled output first, then each layer's.
    """

    def __init__(self, backbone: nn.Module, layers: Sequence[str] = DEFAULT_LAYERS, probe_size: int = 64,
                 memoize: bool = False) -> None:
        super().__init__()
        self.memoize = memoize
        self._memo: dict[bytes, Tensor] = {}
        self.backbone = backbone
        self.layers = tuple(parse_layer(spec) for spec in layers)
        self._modules_at = [resolve_module(backbone, path) for path, _ in self.layers]
        with torch.no_grad():
            mode = backbone.training
            backbone.eval()
            parameter = next(backbone.parameters(), None)
            shape = getattr(backbone, "input_shape", None) or (3, probe_size, probe_size)
            probe = torch.zeros(1, *shape, device=None if parameter is None else parameter.device)
            self.group_sizes = tuple(part.shape[1] for part in self._groups(probe))
            self.dim = sum(self.group_sizes)
            backbone.train(mode)
        self.register_buffer("mean", torch.zeros(self.dim))
        self.register_buffer("std", torch.ones(self.dim))
        self.register_buffer("fitted", torch.tensor(False))

    def raw(self, images: Tensor) -> Tensor:
        """Unstandardised features ``(batch, dim)`` of normalised images ``(batch, 3, H, W)``."""
        return torch.cat(self._groups(images), 1)

    def _groups(self, images: Tensor) -> list[Tensor]:
        """The pooled output ``(batch, feature_dim)``, then each layer's grid ``(batch, channels · grid²)``."""
        maps: dict[int, Tensor] = {}  # by position in `layers`, whatever order the backbone runs them in
        handles = [module.register_forward_hook(lambda _m, _i, output, k=k: maps.__setitem__(k, output))
                   for k, module in enumerate(self._modules_at)]
        try:
            pooled = self.backbone(images)
        finally:
            for handle in handles:
                handle.remove()
        grids = [F.adaptive_avg_pool2d(maps[k], grid).flatten(1) for k, (_, grid) in enumerate(self.layers)]
        return [pooled.flatten(1), *grids]

    @torch.no_grad()
    def fit(self, raw: Tensor) -> None:
        """Fit the standardisation on ``raw`` ``(n, dim)``, n ≥ 2: each column's mean and floored standard deviation.

        A column's standard deviation is at least :data:`MIN_STD_RATIO` times its group's mean one
        (and at least 1e-6, for a group that never varies).
        """
        if len(raw) < 2:
            raise ValueError(f"the standardisation needs at least two samples, got {len(raw)}")
        std = raw.std(0)
        floor = torch.cat([MIN_STD_RATIO * part.mean().expand(len(part)) for part in std.split(self.group_sizes)])
        floored = int((std < floor).sum())
        if floored:
            logger.info("multi-layer features: %d of %d columns barely vary on the %d fitted samples; their "
                        "standard deviation is floored at %.2g of their group's mean", floored, self.dim,
                        len(raw), MIN_STD_RATIO)
        self.mean = raw.mean(0).to(self.mean)
        self.std = torch.maximum(std, floor).clamp_min(1e-6).to(self.std)
        self.fitted = torch.tensor(True, device=self.fitted.device)

    def standardise(self, raw: Tensor) -> Tensor:
        """``(raw - mean) / std``, shape ``(batch, dim)``; the identity before :meth:`fit`."""
        return (raw - self.mean.to(raw)) / self.std.to(raw)

    def forward(self, images: Tensor) -> Tensor:
        """Standardised features ``(batch, dim)`` of normalised images ``(batch, 3, H, W)``."""
        return self.standardise(self._memoized(images) if self.memoize else self.raw(images))

    @torch.no_grad()
    def _memoized(self, images: Tensor) -> Tensor:
        """Raw features, from the memo where an image was seen; a batch with any unseen image is computed whole."""
        keys = [hashlib.blake2b(row.numpy().tobytes(), digest_size=16).digest() for row in images.detach().cpu()]
        if all(key in self._memo for key in keys):
            return torch.stack([self._memo[key] for key in keys]).to(images.device)
        raw = self.raw(images)
        if len(images) > 1:
            self._memo.update(zip(keys, raw.detach()))
        return raw
