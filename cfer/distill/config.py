"""Settings of ``cfer distill`` (:func:`cfer.distill.run_distillation`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cfer.data.sources import DataConfig

__all__ = ["STUDENT_KINDS", "DistillConfig", "MemberSpec"]

STUDENT_KINDS: tuple[str, ...] = ("no-kd", "kd", "kd-bounded", "ensemble")
"""The students: without distillation; Hinton KD from the best teacher (classes only); Hinton KD plus the
teacher-bounded valence/arousal loss (Lee et al. 2023); label-smoothed ensemble soft labels plus the
bounded loss against the ensemble (EmoXNetLite)."""


@dataclass(frozen=True)
class MemberSpec:
    """One network of the run: a timm backbone, the side of its input, and how much of it trains."""

    backbone: str = "efficientnet_lite0"  # any timm name; lite0/1/2 load packaged ImageNet weights
    size: int = 64  # input side in pixels (images are resized from data.size)
    trainable_blocks: int = 2  # last block groups trained; the rest is frozen and computed once
    pretrained: str = "imagenet"  # 'imagenet' or 'none'
    lr: float = 3e-4  # Adam learning rate (1e-3 made two trainable groups of lite0 collapse to one class)
    dropout: float = 0.2  # dropout before the linear head while training


def _teachers() -> list[MemberSpec]:
    # the last block group of each trains on 2 CPU cores in seconds per epoch (two groups of lite2 at 128 px: 16 s)
    return [MemberSpec("efficientnet_lite2", 128, 1, lr=1e-3), MemberSpec("efficientnet_lite1", 128, 1, lr=1e-3),
            MemberSpec("efficientnet_lite0", 128, 1, lr=1e-3)]


@dataclass(frozen=True)
class DistillConfig:
    """Teachers (an ensemble) trained on classes and valence/arousal, then distilled into a small student."""

    data: DataConfig = field(default_factory=lambda: DataConfig(size=128))  # read at the largest input size
    include_neutral: bool = True  # classes: the six basic expressions, and neutral (as RAF-DB basic)
    teachers: list[MemberSpec] = field(default_factory=_teachers)  # the ensemble's members, trained here
    # finished multi-task cfer checkpoints (e.g. another run's teachers/<k>/model.safetensors) used as
    # members too, beside `teachers` (set teachers=[] to use these only)
    teacher_checkpoints: list[str] = field(default_factory=list)
    # the lightweight network: its last 4 block groups train (2 groups kept 75-83% accuracy, 4 keep 90-91%)
    student: MemberSpec = field(default_factory=lambda: MemberSpec(trainable_blocks=4))
    students: list[str] = field(default_factory=lambda: list(STUDENT_KINDS))  # which students to train
    alpha: float = 0.5  # Hinton KD: weight of the soft term (Lee et al.'s alpha)
    temperature: float = 4.0  # Hinton KD temperature T
    margin: float = 0.0  # teacher-bounded loss: margin m
    nu: float = 0.5  # teacher-bounded loss: weight of the bounded term (Chen et al. 2017)
    epsilon: float = 0.1  # EmoXNetLite: label-smoothing share of the ensemble soft labels
    average: Literal["probabilities", "logits"] = "probabilities"  # how the ensemble averages its members
    regression_weight: float = 1.0  # weight of the valence/arousal loss beside the class loss
    epochs: int = 40  # most epochs per network
    batch_size: int = 64  # images per step
    patience: int = 6  # epochs without a lower validation loss before a network stops
    folds: int = 10  # subject-wise folds (the test fold is `fold`); an official split has one
    fold: int = 0  # the held-out test fold
    val_fraction: float = 0.15  # share of the training subjects kept for early stopping
    seed: int = 0  # splits, initialisation and shuffling
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda[:k]"
    progress: bool = True  # a progress bar over the networks' epochs
