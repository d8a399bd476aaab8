"""Early stopping of each incremental step on held-out validation subjects.

The reference (github.com/AngusMaiden/complex-FER) trains every continual step for up to 1000 epochs
and early-stops on ``val_accuracy`` with patience 100, where its validation images are the images
it reports. Here the validation subjects are apart from both the training and the test subjects, the
step trains for a few epochs only (CPU budget), and the best epoch's weights are restored at the end
of the step, before any replay buffer ranks samples with the model.

Avalanche's ``EarlyStoppingPlugin`` reads a metric of a periodic evaluation of a named stream, only
restores the best weights when it stops early, and would log the validation evaluation as if it
were a reported result; this plugin instead scores the validation images itself and relies on
:class:`cfer.core.early_stopping.EarlyStopping` for the bookkeeping.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from avalanche.benchmarks.utils import AvalancheDataset
from avalanche.core import SupervisedPlugin

from cfer.core.early_stopping import EarlyStopping
from cfer.core.inference import predict
from strategies.plugins import trained_classes

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate

__all__ = ["EARLY_STOPPING_METRICS", "EarlyStoppingMetric", "ValidationEarlyStoppingPlugin"]

logger = logging.getLogger(__name__)

EarlyStoppingMetric = Literal["accuracy", "loss"]
EARLY_STOPPING_METRICS: tuple[str, ...] = ("accuracy", "loss")


class ValidationEarlyStoppingPlugin(SupervisedPlugin):
    """Stop a step when validation on the classes seen so far stops improving; keep the best epoch.

    Must come before the strategy's own plugins (``create_strategy(plugins=...)`` puts it there) so
    that the best weights are back before a memory update in ``after_training_exp``.

    Args:
        valid_data: Validation images of every class of the stream (labels in arrival order).
        patience: Epochs without improvement before the step stops.
        metric: ``'accuracy'`` (the reference's choice) or ``'loss'`` (cross-entropy).
        batch_size: Inference mini-batch size.

    Raises:
        ValueError: If ``metric`` is unknown or ``patience`` is not positive.
    """

    def __init__(
        self,
        valid_data: AvalancheDataset,
        patience: int,
        metric: EarlyStoppingMetric = "accuracy",
        batch_size: int = 128,
    ) -> None:
        super().__init__()
        if metric not in EARLY_STOPPING_METRICS:
            raise ValueError(f"unknown metric {metric!r}; known: {list(EARLY_STOPPING_METRICS)}")
        if patience < 1:
            raise ValueError(f"patience must be positive, got {patience}")
        self.valid_data = valid_data.eval()
        self._all_targets = torch.as_tensor(list(self.valid_data.targets))
        self.patience = patience
        self.metric: EarlyStoppingMetric = metric
        self.batch_size = batch_size
        self.stopper = EarlyStopping(patience)
        self.history: list[float] = []
        """Validation metric after each epoch of the current step."""
        self._seen: AvalancheDataset | None = None
        self._targets = torch.empty(0, dtype=torch.long)

    def before_training_exp(self, strategy: "SupervisedTemplate", **kwargs: Any) -> None:
        seen = trained_classes(strategy)
        kept = (self._all_targets < seen).nonzero().flatten()
        self._seen = self.valid_data.subset(kept.tolist())
        self._targets = self._all_targets[kept]
        self.stopper = EarlyStopping(self.patience)
        self.history = []

    def after_training_epoch(self, strategy: "SupervisedTemplate", **kwargs: Any) -> None:
        assert self._seen is not None
        logits = predict(strategy.model, self._seen, self.batch_size, strategy.device)
        if self.metric == "accuracy":
            value = (logits.argmax(1) == self._targets).float().mean().item()
            score = -value  # EarlyStopping minimises
        else:
            value = F.cross_entropy(logits, self._targets).item()
            score = value
        self.history.append(value)
        epoch = len(self.history) - 1
        if self.stopper.step(score, strategy.model, epoch):
            logger.info("early stop after epoch %d; best epoch %d", epoch + 1, self.stopper.best_epoch + 1)
            strategy.stop_training()

    def after_training_exp(self, strategy: "SupervisedTemplate", **kwargs: Any) -> None:
        self.stopper.restore(strategy.model)

    @property
    def best_epoch(self) -> int:
        """Zero-based epoch whose weights the step kept; -1 before any epoch."""
        return self.stopper.best_epoch
