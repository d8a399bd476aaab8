"""Early stopping on a validation score, keeping the best weights (plain PyTorch bookkeeping).

Used by the basic phase (validation loss) and, through ``strategies.ValidationEarlyStoppingPlugin``,
by every incremental step (validation accuracy or loss).
"""

from __future__ import annotations

import copy

from torch import Tensor, nn

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Stops when the validation loss has not improved for ``patience`` epochs; keeps the best weights.

    Args:
        patience: Epochs without improvement before stopping.
        min_delta: Smallest decrease of the loss that counts as an improvement.
    """

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best_loss = float("inf")
        self.best_epoch = -1
        self.best_state: dict[str, Tensor] | None = None
        self.epochs_without_improvement = 0

    def step(self, loss: float, model: nn.Module, epoch: int) -> bool:
        """Records an epoch's validation loss; returns True when training should stop."""
        if loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch = loss, epoch
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        return self.epochs_without_improvement >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Loads the best weights seen into ``model``."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    def state_dict(self) -> dict:
        """Everything needed to resume, as tensors and plain numbers."""
        return {
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "epochs_without_improvement": self.epochs_without_improvement,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.best_loss = float(state["best_loss"])
        self.best_epoch = int(state["best_epoch"])
        self.epochs_without_improvement = int(state["epochs_without_improvement"])
        self.best_state = state["best_state"]
