"""Resume an Avalanche strategy after its last finished experience, exactly: one small interface.

:class:`StreamCheckpoint` is the resume file of one run. After every experience, :meth:`~StreamCheckpoint.save`
writes, as tensors and plain values (``torch.load(weights_only=True)`` reads it):

* the model's state dict and class count;
* the optimizer's state, with the parameter name at each position (Avalanche maps optimizer
  parameters by name, and a grown head changes positions);
* Avalanche's clock;
* the random generators, through Avalanche's ``RNGManager`` (Python, NumPy, torch, CUDA);
* what the strategy itself carries between experiences (its registry entry's
  :class:`~strategies.states.StrategyState`);
* the caller's per-step records.

A resumed run calls :meth:`~StreamCheckpoint.load_model` before building its optimizer,
adds :meth:`~StreamCheckpoint.plugins` to the strategy, then calls :meth:`~StreamCheckpoint.restore`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.determinism.rng_manager import RNGManager
from torch import nn

from cfer.io import atomic_write
from strategies.states import RestoreContext, StrategyState

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate

__all__ = ["STATE_FORMAT", "StreamCheckpoint", "rng_state", "seed_everything", "set_rng_state"]

logger = logging.getLogger(__name__)

STATE_FORMAT = 1
"""Version of the resume file's layout."""

_CLOCK = (
    "train_iterations",
    "train_exp_counter",
    "train_exp_epochs",
    "train_exp_iterations",
    "train_epoch_iterations",
    "total_iterations",
)


class StreamCheckpoint:
    """The resume file of one run of one strategy.

    Args:
        path: The file (``state.pt``).
        state: How the strategy saves what it carries between experiences; None if it cannot
            resume (its run then restarts, with a warning).
    """

    def __init__(self, path: str | Path, state: StrategyState | None) -> None:
        self.path = Path(path)
        self.state = state
        self._saved: dict[str, Any] | None = None
        self._optimizer_loader = _OptimizerStateLoader()

    def load_model(self, model: nn.Module) -> bool:
        """Read the file, if there is one to resume from, and put the saved weights into ``model``.

        Args:
            model: A fresh model of the run (a :class:`~strategies.protocols.GrowingClassifier`);
                its head is grown to the saved class count.

        Returns:
            Whether the run resumes.

        Raises:
            ValueError: If the file has another format version.
        """
        if not self.path.exists():
            return False
        if self.state is None:
            logger.warning("%s: this strategy cannot resume mid-stream; starting its run again", self.path.parent)
            return False
        saved = torch.load(self.path, weights_only=True)
        if saved.get("format") != STATE_FORMAT:
            raise ValueError(f"{self.path} has format {saved.get('format')}, expected {STATE_FORMAT}; delete it to start over")
        model.add_classes(int(saved["num_classes"]) - model.num_classes)
        model.load_state_dict(saved["model"])
        self._saved = saved
        self._optimizer_loader.saved = saved["optimizer"]
        return True

    def plugins(self) -> list[SupervisedPlugin]:
        """Plugins the strategy needs for a resume (the optimizer state loader; idle when not resuming)."""
        return [self._optimizer_loader]

    def restore(self, strategy: "SupervisedTemplate", context: RestoreContext) -> list[dict[str, Any]]:
        """Put the saved clock, strategy state and random generators back into a fresh strategy.

        Args:
            strategy: Built around the model given to :meth:`load_model`.
            context: What the strategy's restore may need (training split, basic model).

        Returns:
            The saved per-step records; empty when not resuming.
        """
        if self._saved is None or self.state is None:
            return []
        saved = self._saved
        for key, value in saved["clock"].items():
            setattr(strategy.clock, key, int(value))
        self.state.restore(strategy, saved["strategy"], context)
        # Avalanche maps the optimizer's parameters by name on its first call, which must come before
        # the head grows (cfer grows it earlier than Avalanche's own first call)
        strategy.make_optimizer(reset_optimizer_state=True)
        set_rng_state(saved["rng"])
        logger.info("%s: resuming after experience %d", self.path.parent, len(saved["steps"]) - 1)
        return list(saved["steps"])

    def save(self, strategy: "SupervisedTemplate", model: nn.Module, steps: list[dict[str, Any]]) -> None:
        """Write the resume file (atomically) after an experience; nothing for a non-resumable strategy.

        Args:
            strategy: The strategy after the experience.
            model: The model it trains (see :func:`strategies.trained_model`).
            steps: Per-step records so far.
        """
        if self.state is None:
            return
        state = {
            "format": STATE_FORMAT,
            "num_classes": model.num_classes,
            "model": {key: value.detach().cpu() for key, value in model.state_dict().items()},
            "optimizer": _optimizer_state(strategy),
            "clock": {key: int(getattr(strategy.clock, key)) for key in _CLOCK},
            "strategy": self.state.capture(strategy),
            "rng": rng_state(),
            "steps": steps,
        }
        atomic_write(self.path, lambda file: torch.save(state, file))

    def discard(self) -> None:
        """Remove the resume file (the run has finished)."""
        self.path.unlink(missing_ok=True)


def seed_everything(seed: int) -> None:
    """Seed every generator Avalanche's ``RNGManager`` manages (Python, NumPy, torch, CUDA)."""
    RNGManager.set_random_seeds(seed)


def rng_state() -> dict[str, Any]:
    """The state of every generator Avalanche's ``RNGManager`` manages, as tensors and plain values."""
    return _encode(RNGManager.__getstate__())


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back a state captured by :func:`rng_state`."""
    RNGManager.__setstate__(_decode(state))


def _encode(value: Any) -> Any:
    # weights_only loading accepts tensors, containers and scalars, not NumPy arrays
    if isinstance(value, np.ndarray):
        return {"__ndarray__": torch.from_numpy(value.astype(np.int64)), "dtype": str(value.dtype)}
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_encode(item) for item in value)
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "__ndarray__" in value:
        return value["__ndarray__"].numpy().astype(value["dtype"])
    if isinstance(value, dict):
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_decode(item) for item in value)
    return value


def _optimizer_state(strategy: "SupervisedTemplate") -> dict[str, Any]:
    """The optimizer's state dict and the parameter name at each position (None: not in the model)."""
    names = {id(p): name for name, p in (strategy.optimized_param_id or {}).items()}
    return {
        "state_dict": strategy.optimizer.state_dict(),
        "param_names": [[names.get(id(p)) for p in group["params"]] for group in strategy.optimizer.param_groups],
    }


class _OptimizerStateLoader(SupervisedPlugin):
    """Puts a saved optimizer state back once Avalanche has (re)built the optimizer's parameter list.

    Avalanche resets the optimizer the first time a strategy trains, so a resumed run loads the
    state at ``before_training_exp``, after that reset and after the head has grown. The state is
    matched to parameters by name, because the positions can differ: a strategy built around a model
    that grows after its optimizer was made (the registry's iCaRL) keeps the replaced tensors in the
    optimizer. Parameters that grew since the save restart from an empty state, as Avalanche's
    ``update_optimizer`` does in an uninterrupted run.
    """

    def __init__(self) -> None:
        super().__init__()
        self.saved: dict[str, Any] | None = None

    def before_training_exp(self, strategy: "SupervisedTemplate", **kwargs: Any) -> None:
        if self.saved is None:
            return
        optimizer = strategy.optimizer
        optimizer.load_state_dict(_remap(self.saved, optimizer, strategy.optimized_param_id))
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                slots = optimizer.state.get(parameter, {})
                if any(torch.is_tensor(v) and v.dim() > 0 and v.shape != parameter.shape for v in slots.values()):
                    optimizer.state[parameter] = {}
        self.saved = None


def _remap(saved: dict[str, Any], optimizer: torch.optim.Optimizer, param_ids: dict[str, Any]) -> dict[str, Any]:
    """The saved optimizer state dict renumbered for the positions of ``optimizer``'s parameters."""
    saved_state = saved["state_dict"]
    saved_index = {
        name: index
        for group_names, group in zip(saved["param_names"], saved_state["param_groups"])
        for name, index in zip(group_names, group["params"])
        if name
    }
    names = {id(p): name for name, p in param_ids.items()}
    state: dict[int, Any] = {}
    groups = []
    position = 0
    for group, saved_group in zip(optimizer.param_groups, saved_state["param_groups"]):
        indices = []
        for parameter in group["params"]:
            index = saved_index.get(names.get(id(parameter), ""))
            if index is not None and index in saved_state["state"]:
                state[position] = saved_state["state"][index]
            indices.append(position)
            position += 1
        groups.append({**saved_group, "params": indices})
    return {"state": state, "param_groups": groups}
