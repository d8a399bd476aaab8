"""A linear probe: new classes on a frozen backbone, so that a basic-phase model can be explained
for compound classes too.

A model of the basic phase outputs the six basic classes only, so it has no compound map to
compare with its components' maps. :func:`fit_linear_probe` keeps its backbone exactly as trained
(frozen, eval mode) and fits one linear layer over the pooled features to all the classes of a
dataset (e.g. the 6 basic and 15 compound categories), in a few seconds on a CPU because the
features are computed once. With global average pooling, the Grad-CAM map of class ``c`` is then
``ReLU(sum_k W[c, k] A_k)`` for the backbone's last feature maps ``A_k``: the probe answers "which of
the features the basic phase learnt separate this class, and where are they", so a compound map that
resembles its components' maps says the compound is recognised from the features of its basic
components, which is the paper's claim. It does not say how a continually trained model would look.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass

import torch
from torch import nn

from cfer.core.head_training import fit_head
from cfer.core.inference import predict
from cfer.data.dataset import FaceExpressionDataset
from cfer.models.classifier import ExpressionClassifier
from cfer.models.heads import LinearHead
from cfer.training.augment import make_preprocess

logger = logging.getLogger(__name__)

__all__ = ["ProbeConfig", "fit_linear_probe", "probe_accuracy"]


@dataclass(frozen=True)
class ProbeConfig:
    """How the linear probe is fitted (full-batch Adam on cached features)."""

    steps: int = 300  # full-batch optimisation steps
    lr: float = 0.01  # Adam learning rate
    weight_decay: float = 1e-3  # L2 on the probe's weights; keeps it from memorising few subjects
    seed: int = 0  # initialisation of the probe
    batch_size: int = 64  # images per backbone pass when caching features


def fit_linear_probe(
    model: ExpressionClassifier, dataset: FaceExpressionDataset, config: ProbeConfig = ProbeConfig()
) -> ExpressionClassifier:
    """Fits a linear classifier over ``dataset.classes`` on the frozen backbone of ``model``.

    Args:
        model: A trained classifier; it is not modified.
        dataset: uint8 images with targets indexing ``dataset.classes``.
        config: Optimisation settings.

    Returns:
        A new :class:`ExpressionClassifier` in eval mode with a copy of ``model``'s backbone
        (parameters frozen) and a :class:`cfer.models.LinearHead` with one output per class of
        ``dataset``, in that order.
    """
    backbone = copy.deepcopy(model.backbone).eval()
    backbone.requires_grad_(False)
    features = _features(backbone, model, dataset, config.batch_size)
    targets = dataset.targets.to(features.device)
    generator = torch.Generator().manual_seed(config.seed)
    head = LinearHead(features.shape[1], len(dataset.classes))
    with torch.no_grad():
        nn.init.xavier_uniform_(head.fc.weight, generator=generator)
        head.fc.bias.zero_()
    head.to(features.device)
    optimizer = torch.optim.Adam(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    # Standardising the features makes one learning rate fit every backbone; it is folded into the
    # linear layer afterwards, so the probe takes the backbone's features as they are.
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    standardised = (features - mean) / std
    history = fit_head(head, standardised, targets, optimizer, config.steps)
    with torch.no_grad():
        head.fc.weight.div_(std)
        head.fc.bias.sub_(head.fc.weight @ mean)
    # The config describes the probe (a linear head), so save_checkpoint can rebuild it.
    config_of_probe = dataclasses.replace(model.config, head="linear", dropout=0.0) if model.config else None
    probe = ExpressionClassifier(backbone, head.eval(), config=config_of_probe)
    probe.eval()
    logger.info("linear probe over %d classes: final training loss %.3f, training accuracy %.3f",
                len(dataset.classes), history[-1]["train_loss"], probe_accuracy(probe, dataset, features=features))
    return probe


@torch.no_grad()
def probe_accuracy(
    model: ExpressionClassifier, dataset: FaceExpressionDataset, features: torch.Tensor | None = None
) -> float:
    """Accuracy of a classifier on a dataset whose classes are the model's outputs, in order.

    Args:
        model: The classifier (e.g. a probe).
        dataset: uint8 images and targets.
        features: (N, feature_dim) features of ``dataset`` if already computed.

    Returns:
        The share of correctly classified images.
    """
    model.eval()
    if features is None:
        features = _features(model.backbone, model, dataset, 64)
    predictions = model.head(features).argmax(1).cpu()
    return float((predictions == dataset.targets).float().mean()) if len(dataset) else 0.0


def _features(backbone: nn.Module, model: ExpressionClassifier, dataset: FaceExpressionDataset,
              batch_size: int) -> torch.Tensor:
    preprocess = make_preprocess(model.data_config["mean"], model.data_config["std"])
    return predict(backbone, dataset.images, batch_size, preprocess=preprocess, out_device=None)
