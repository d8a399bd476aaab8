"""A frozen trunk computed once: split a timm CNN where training starts, and cache what it outputs.

In every incremental step of Maiden & Nakisa's protocol the first block groups of the backbone are
frozen (``trainable_blocks`` says how many of the last ones train) and, without augmentation, each
image goes through them unchanged epoch after epoch. :func:`split_backbone` cuts a timm backbone at
that boundary into a ``trunk`` and a ``tail`` that share the backbone's modules (training the tail
trains the backbone); :class:`FeatureCache` runs the trunk once per image and keeps the activations
(float32 or float16, in memory or memory-mapped on disk), keyed by the trunk's weights, the images
and the preprocessing, so a stale cache is never served; :class:`TailClassifier` is the tail plus the
head, a model over cached activations with the members the strategies use.

The split works for timm CNNs whose backbone computes a chain of its children (block stages expanded
where a group boundary falls inside them): EfficientNet, MobileNet, ResNet, RegNet, ConvNeXt... It
verifies that the chain reproduces the backbone's output exactly, and refuses otherwise.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from timm.models import group_parameters
from torch import Tensor, nn

from cfer.core.inference import predict
from cfer.io import atomic_write

__all__ = [
    "BackboneSplit",
    "FeatureCache",
    "FeatureCacheConfig",
    "TailClassifier",
    "block_groups",
    "cache_decision",
    "fingerprint",
    "split_at_frozen",
    "split_backbone",
    "split_holding",
]

logger = logging.getLogger(__name__)


def block_groups(backbone: nn.Module) -> list[list[str]]:
    """Parameter names of a timm backbone grouped by stage, from input to output.

    Uses timm's coarse ``group_matcher`` (the grouping of layer-wise learning-rate decay): e.g.
    ResNet gives ``[stem, layer1, layer2, layer3, layer4]``; EfficientNet gives the stem, then
    one group per block stage, the last one including ``conv_head``.

    Args:
        backbone: timm model.

    Returns:
        One list of parameter names (as in ``backbone.named_parameters()``) per group.
    """
    groups = group_parameters(backbone, backbone.group_matcher(coarse=True))
    return [list(names) for _, names in sorted(groups.items())]


class _Chain(nn.Module):
    """Modules applied one after the other, kept under their dotted names (``blocks.5``).

    :meth:`submodule` finds a module by its path in the backbone the chain was cut from
    (``blocks.-2`` included), so code that hooks a backbone's module finds it in the chain too.
    """

    def __init__(self, units: Sequence[tuple[str, nn.Module]], training: bool = True,
                 lengths: dict[str, int] | None = None, input_shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.names = tuple(name for name, _ in units)
        self.units = nn.ModuleList(module for _, module in units)
        self.training = training  # the mode of the backbone it was cut from; its units keep theirs
        self.lengths = dict(lengths or {})  # the backbone's module lists by path, for negative indices
        self.input_shape = input_shape  # (C, H, W) of one input, where known

    def forward(self, x: Tensor) -> Tensor:
        for unit in self.units:
            x = unit(x)
        return x

    def submodule(self, path: str) -> nn.Module:
        """The module at ``path`` in the backbone (a negative index counts from the end of a module list).

        Raises:
            ValueError: If the chain does not hold that module (it lies before the cut, or nowhere).
        """
        parts = path.split(".")
        for i, part in enumerate(parts):
            length = self.lengths.get(".".join(parts[:i]))
            if length is not None and part.startswith("-") and part[1:].isdigit() and int(part) >= -length:
                parts[i] = str(length + int(part))
        absolute = ".".join(parts)
        for name, unit in zip(self.names, self.units):
            if absolute == name:
                return unit
            if absolute.startswith(name + "."):
                try:
                    return unit.get_submodule(absolute[len(name) + 1:])
                except AttributeError:
                    break
        span = f"{self.names[0]} to {self.names[-1]}" if self.names else "nothing"
        raise ValueError(f"module {path!r} is not in this part of the backbone ({span}); a cut earlier in the "
                         "backbone, or a module path of this backbone, is needed")

    def holds(self, path: str) -> bool:
        """Whether :meth:`submodule` finds ``path`` here."""
        try:
            self.submodule(path)
        except ValueError:
            return False
        return True


def _module_lists(backbone: nn.Module) -> dict[str, int]:
    """The length of every module list or sequence of a backbone, by its dotted path."""
    return {name: len(module) for name, module in backbone.named_modules()
            if name and isinstance(module, (nn.Sequential, nn.ModuleList))}


@dataclass(frozen=True)
class BackboneSplit:
    """A backbone cut where training starts; both halves share the backbone's modules."""

    trunk: nn.Module  # images (batch, 3, H, W) -> activations; every parameter frozen
    tail: nn.Module  # activations -> pooled features (batch, feature_dim); empty when all is frozen
    trunk_units: tuple[str, ...]  # dotted module names, in order
    tail_units: tuple[str, ...]
    trainable_blocks: int  # the boundary, counted in block groups from the end

    def apply_to(self, backbone: nn.Module) -> BackboneSplit:
        """The same cut of another backbone of the same architecture (e.g. a copy), without tracing it.

        Args:
            backbone: A backbone with the same module names.

        Returns:
            A split sharing ``backbone``'s modules.
        """
        lengths = _module_lists(backbone)

        def chain(names: tuple[str, ...], shape: tuple[int, ...] | None) -> _Chain:
            return _Chain([(name, backbone.get_submodule(name)) for name in names], backbone.training, lengths, shape)

        return BackboneSplit(chain(self.trunk_units, self.trunk.input_shape), chain(self.tail_units, self.tail.input_shape),
                             self.trunk_units, self.tail_units, self.trainable_blocks)

    def describe(self) -> str:
        """Where the cut is, for the log."""
        last = self.trunk_units[-1] if self.trunk_units else "nothing"
        return f"trunk up to {last} frozen and cached, {len(self.tail_units)} modules train after it"


@dataclass(frozen=True)
class FeatureCacheConfig:
    """Whether and how a frozen trunk's activations are computed once (:class:`FeatureCache`)."""

    # auto: cache exactly when augmentation is off; always: refuse to run without it; never: train on images
    mode: Literal["auto", "always", "never"] = "auto"
    dtype: Literal["float32", "float16"] = "float32"  # float16 halves the memory, not bit-exact
    directory: str | None = None  # memory-map the activations from .npy files there; None: in memory


def cache_decision(config: FeatureCacheConfig, augmentation: bool) -> tuple[bool, str]:
    """Whether the trunk is cached, and why, for the log.

    Args:
        config: The cache settings.
        augmentation: Whether the training images are augmented.

    Returns:
        ``(cached, reason)``.

    Raises:
        ValueError: If the cache is forced on while augmentation is on.
    """
    if config.mode == "never":
        return False, "feature_cache.mode is never"
    if augmentation and config.mode == "always":
        raise ValueError("feature_cache.mode=always needs augmentation off: augmented images give new activations "
                         "every epoch; set feature_cache.mode=auto or turn augmentation off")
    if augmentation:
        return False, "augmentation is on, so the trunk sees new pixels every epoch"
    return True, "augmentation is off, so the frozen trunk maps each image to the same activations every epoch"


def split_backbone(backbone: nn.Module, trainable_blocks: int, example: Tensor) -> BackboneSplit:
    """Cut a timm backbone before its last ``trainable_blocks`` block groups.

    Args:
        backbone: timm model built with ``num_classes=0``.
        trainable_blocks: Block groups (see :func:`block_groups`) that train, counted from the end;
            0 puts the whole backbone in the trunk (its output is then the pooled features).
        example: A batch of normalised images ``(batch, 3, H, W)`` (two are enough) to trace the
            chain of modules and check that it reproduces the backbone exactly.

    Returns:
        The split.

    Raises:
        ValueError: If the backbone does not compute a chain of its modules, so it cannot be split.
    """
    groups = block_groups(backbone)
    trainable_blocks = min(max(trainable_blocks, 0), len(groups))
    group_of = {name: index for index, names in enumerate(groups) for name in names}
    units = _called_in_order(backbone, _candidate_units(backbone, group_of), example)
    first_trainable = len(groups) - trainable_blocks
    cut = next((i for i, (name, _) in enumerate(units) if _groups_under(name, group_of, backbone)
                and min(_groups_under(name, group_of, backbone)) >= first_trainable), len(units))
    mode, lengths = backbone.training, _module_lists(backbone)
    split = BackboneSplit(_Chain(units[:cut], mode, lengths, tuple(example.shape[1:])), _Chain(units[cut:], mode, lengths),
                          tuple(n for n, _ in units[:cut]), tuple(n for n, _ in units[cut:]), trainable_blocks)
    split.tail.input_shape = _check_chain(backbone, split, example)
    return split


def split_holding(backbone: nn.Module, trainable_blocks: int, example: Tensor, modules: Sequence[str]) -> BackboneSplit:
    """The cut before the last ``trainable_blocks`` block groups, or the nearest earlier one whose tail holds ``modules``.

    A frozen head that hooks inner modules (:class:`cfer.core.layers.MultiLayerFeatures`) reads them
    from cached activations only if they run after the cut.

    Args:
        backbone: timm model built with ``num_classes=0``.
        trainable_blocks: The cut at least as late as this (see :func:`split_backbone`).
        example: A batch of normalised images ``(batch, 3, H, W)``.
        modules: Dotted module paths of ``backbone`` (a negative index counts from the end of a list).

    Returns:
        The latest such split.

    Raises:
        ValueError: If the backbone cannot be split, or a path names no module of it.
    """
    groups = len(block_groups(backbone))
    for blocks in range(min(max(trainable_blocks, 0), groups), groups + 1):
        split = split_backbone(backbone, blocks, example)
        if all(split.tail.holds(path) for path in modules):
            return split
    missing = [path for path in modules if not split.tail.holds(path)]
    raise ValueError(f"{type(backbone).__name__} has no module {missing[0]!r} that runs in order; name a module "
                     f"of its chain ({', '.join(split.tail_units)})")


def split_at_frozen(backbone: nn.Module, example: Tensor) -> BackboneSplit:
    """Cut a timm backbone where its trainable parameters start (see :func:`split_backbone`).

    Args:
        backbone: timm model, frozen as ``freeze_backbone`` leaves it.
        example: A batch of normalised images ``(batch, 3, H, W)``.

    Returns:
        The split whose trunk holds exactly the leading block groups without a trainable parameter.

    Raises:
        ValueError: If the backbone cannot be split.
    """
    groups = block_groups(backbone)
    parameters = dict(backbone.named_parameters())
    frozen = 0
    while frozen < len(groups) and not any(parameters[name].requires_grad for name in groups[frozen]):
        frozen += 1
    return split_backbone(backbone, len(groups) - frozen, example)


def _groups_under(prefix: str, group_of: dict[str, int], backbone: nn.Module) -> set[int]:
    module = backbone.get_submodule(prefix)
    return {group_of[f"{prefix}.{name}"] for name, _ in module.named_parameters() if f"{prefix}.{name}" in group_of}


def _candidate_units(backbone: nn.Module, group_of: dict[str, int]) -> list[tuple[str, nn.Module]]:
    """The backbone's children, each expanded into its own children while it spans several groups."""
    units: list[tuple[str, nn.Module]] = []

    def visit(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            full = f"{prefix}{name}"
            if len(_groups_under(full, group_of, backbone)) > 1 and len(list(child.children())) > 0:
                visit(child, full + ".")
            else:
                units.append((full, child))

    visit(backbone, "")
    return units


@torch.no_grad()
def _called_in_order(backbone: nn.Module, units: list[tuple[str, nn.Module]], example: Tensor
                     ) -> list[tuple[str, nn.Module]]:
    calls: list[int] = []
    handles = [module.register_forward_hook(lambda *args, index=i: calls.append(index))
               for i, (_, module) in enumerate(units)]
    was_training = backbone.training
    try:
        backbone.eval()
        backbone(example)
    finally:
        backbone.train(was_training)
        for handle in handles:
            handle.remove()
    if len(set(calls)) != len(calls):
        raise ValueError(f"{type(backbone).__name__} calls a module twice; it cannot be split into a trunk and a tail")
    return [units[index] for index in calls]


@torch.no_grad()
def _check_chain(backbone: nn.Module, split: BackboneSplit, example: Tensor) -> tuple[int, ...]:
    """Checks that trunk then tail computes the backbone; returns the shape of one trunk output."""
    was_training = backbone.training
    backbone.eval()
    try:
        expected = backbone(example)
        middle = split.trunk(example)
        actual = split.tail(middle)
    finally:
        backbone.train(was_training)
    if actual.shape != expected.shape or not torch.equal(actual, expected):
        raise ValueError(
            f"{type(backbone).__name__} does not compute the chain of its modules "
            f"({', '.join(split.trunk_units + split.tail_units)}), so its frozen trunk cannot be cached; "
            "set feature_cache.mode=never"
        )
    return tuple(middle.shape[1:])


class TailClassifier(nn.Module):
    """The trainable tail of a backbone and a head: a classifier over cached trunk activations.

    Satisfies ``strategies.GrowingClassifier`` (``backbone``, ``head``, ``num_classes``,
    ``add_classes``, and ``l2_penalty`` when the head has one). Its modules are the full model's, so
    training it trains the full model (a strategy that copies its model, GDumb, needs
    :meth:`into` to put the weights back).

    Args:
        tail: The split's tail (activations to pooled features).
        head: The classifier head, with ``num_classes`` and ``add_classes``.
        regressor: The model's valence/arousal regressor on the pooled features, if it has one
            (read by :meth:`regress`; the logits of :meth:`forward` do not depend on it).
    """

    def __init__(self, tail: nn.Module, head: nn.Module, regressor: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = tail
        self.head = head
        self.regressor = regressor

    @property
    def num_classes(self) -> int:
        """Current number of output units."""
        return self.head.num_classes

    def add_classes(self, num_new: int, generator: torch.Generator | None = None) -> None:
        """Append ``num_new`` output units to the head; old logits stay the same."""
        self.head.add_classes(num_new, generator=generator)

    def l2_penalty(self) -> Tensor:
        """The head's L2 penalty (zero for a head without one)."""
        penalty = getattr(self.head, "l2_penalty", None)
        return penalty() if penalty is not None else self.head.fc.weight.new_zeros(())

    def forward(self, activations: Tensor) -> Tensor:
        """Logits ``(batch, num_classes)`` of trunk activations ``(batch, C, h, w)``."""
        return self.head(self.backbone(activations))

    def regress(self, activations: Tensor) -> Tensor:
        """Regression outputs ``(batch, outputs)`` of trunk activations ``(batch, C, h, w)``.

        Raises:
            ValueError: If there is no regressor.
        """
        if self.regressor is None:
            raise ValueError("this classifier has no regression outputs")
        return self.regressor(self.backbone(activations))

    def into(self, model: nn.Module) -> nn.Module:
        """Copy this tail's and head's weights into the full ``model`` they were split from (in place).

        Args:
            model: A classifier with ``backbone`` (the whole timm backbone) and ``head``.

        Returns:
            ``model``, with the head grown to this one's class count.
        """
        missing = self.num_classes - model.num_classes
        if missing > 0:
            model.add_classes(missing)
        model.head.load_state_dict(self.head.state_dict())
        if self.regressor is not None:
            model.regressor.load_state_dict(self.regressor.state_dict())
        for name, unit in zip(self.backbone.names, self.backbone.units):
            model.backbone.get_submodule(name).load_state_dict(unit.state_dict())
        return model


def fingerprint(*parts: Tensor | nn.Module | str) -> str:
    """A SHA-256 of tensors (their bytes, shape and dtype), modules (their state dicts) and strings.

    Args:
        *parts: What a cached result depends on.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, nn.Module):
            for name, tensor in part.state_dict().items():
                digest.update(name.encode())
                _update(digest, tensor)
        elif isinstance(part, Tensor):
            _update(digest, part)
        else:
            digest.update(str(part).encode())
    return digest.hexdigest()


def _update(digest: hashlib._Hash, tensor: Tensor) -> None:
    digest.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
    digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())


class FeatureCache:
    """The outputs of a frozen trunk on a fixed set of images, computed once.

    Build it with :meth:`build`; index it like a tensor (``cache[rows]``). ``key`` identifies the
    trunk's weights, the images, the preprocessing and the boundary, so :meth:`matches` tells whether
    it may serve another request, and a disk cache is found again by its key.

    Args:
        activations: Shape ``(n, C, h, w)`` (or ``(n, feature_dim)`` for a fully frozen backbone).
        key: Its fingerprint (see :func:`fingerprint`).
    """

    def __init__(self, activations: Tensor, key: str, path: Path | None = None) -> None:
        self.activations = activations
        self.key = key
        self.path = path

    @classmethod
    def build(
        cls,
        split: BackboneSplit,
        images: Tensor,
        preprocess: Callable[[Tensor], Tensor],
        preprocess_id: str,
        batch_size: int = 256,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        directory: str | Path | None = None,
        map_rows: Callable[[Callable[[slice], Tensor], int], Tensor] | None = None,
    ) -> FeatureCache:
        """Run the trunk once over ``images`` (or reload a disk cache with the same key).

        Args:
            split: The backbone split whose trunk to run.
            images: uint8 images ``(n, 3, H, W)``.
            preprocess: Maps a uint8 batch to the trunk's input (the data pipeline's eval transform).
            preprocess_id: Describes ``preprocess`` (e.g. its ``repr``), part of the key.
            batch_size: Images per trunk pass.
            device: Where the trunk runs. The activations are kept in host memory whatever the device:
                the data loaders gather one sample at a time, which on a GPU would be one small
                kernel per sample, while host memory batches go to the device as usual.
            dtype: Storage type; float16 halves the memory and is not bit-exact.
            directory: Memory-map the activations from a ``.npy`` file there (kept for the next run
                with the same key); None keeps them in memory.
            map_rows: Runs a function of a slice of the rows over all ``n`` rows and concatenates the
                outputs, e.g. :meth:`cfer.distributed.Ranks.map_rows`, which gives each process of a
                ``torchrun`` launch a block; None runs the trunk over every row here.

        Returns:
            The cache.
        """
        key = fingerprint(split.trunk, images, preprocess_id, ",".join(split.trunk_units), str(dtype))
        path = Path(directory) / f"trunk-{key[:16]}.npy" if directory is not None else None
        if path is not None and path.exists():
            logger.info("feature cache: reusing %s", path)
            return cls(torch.from_numpy(np.load(path, mmap_mode="c")), key, path)
        def trunk(rows: slice) -> Tensor:
            return predict(split.trunk, images[rows], batch_size, device, preprocess=preprocess)

        activations = (trunk(slice(None)) if map_rows is None else map_rows(trunk, len(images))).to(dtype)
        if path is not None:
            array = activations.numpy()
            atomic_write(path, lambda file: np.save(file, array), size=array.nbytes)
            activations = torch.from_numpy(np.load(path, mmap_mode="c"))
        return cls(activations, key, path)

    def __getitem__(self, rows: Tensor | slice | int) -> Tensor:
        return self.activations[rows]

    def __len__(self) -> int:
        return self.activations.shape[0]

    @property
    def nbytes(self) -> int:
        """Size of the activations in bytes."""
        return self.activations.element_size() * self.activations.nelement()

    def matches(self, key: str) -> bool:
        """Whether this cache was built from the inputs ``key`` identifies."""
        return key == self.key

    def describe(self) -> str:
        """One line for the log: shape, type, size and where it lives."""
        where = f"memory-mapped from {self.path}" if self.path is not None else f"in {self.activations.device} memory"
        return (f"{len(self)} activations of shape {tuple(self.activations.shape[1:])}, {self.activations.dtype}, "
                f"{self.nbytes / 2**20:.1f} MiB, {where}")
