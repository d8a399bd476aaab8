"""What a strategy remembers between experiences, as tensors and plain values, for resuming.

A run saves after every experience and must, started again, continue exactly where it stopped. The
model's and optimizer's state dicts, Avalanche's clock and the random generators are common to every
strategy (see :mod:`strategies.checkpoint`); what else a strategy carries from one experience to the
next is specific to it, so each registered strategy's entry carries a :class:`StrategyState` that
captures it (``capture``) and puts it back into a freshly built strategy (``restore``). Replay buffers are saved
as the ``sample_id`` s of their samples (see :mod:`cfer.continual.benchmark`) in buffer order, and
rebuilt as subsets of the training split. Everything is loadable with ``torch.load(weights_only=True)``.

A strategy whose entry has no state cannot resume mid-stream; its run restarts from experience 0.
That is iCaRL only: a capture of Avalanche's ``_ICaRLPlugin`` and ``ICaRLLossPlugin`` state (exemplar
tensors, herding order, class means, old model) resumed identically after experience 2 but not after
experience 3 in a test, so it is not offered until the difference is understood.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from avalanche.benchmarks.utils import AvalancheDataset
from avalanche.training.plugins import EWCPlugin, GDumbPlugin, LwFPlugin, ReplayPlugin
from avalanche.training.storage_policy import ReservoirSamplingBuffer
from avalanche.training.templates import SupervisedTemplate
from avalanche.training.utils import ParamData
from torch import nn

from cfer.core.distillation import TeacherMemo, frozen_copy
from cfer.core.layers import MultiLayerFeatures
from strategies.plugins import DistillationPlugin, ExemplarHeadPlugin, PSMRReplayPlugin
from strategies.statistics_heads import StatisticsHeadPlugin

__all__ = [
    "CFER_STATE",
    "EWC_STATE",
    "GDUMB_STATE",
    "LWF_STATE",
    "NO_STATE",
    "REPLAY_STATE",
    "STATISTICS_HEAD_STATE",
    "RestoreContext",
    "StrategyState",
]


@dataclass(frozen=True)
class RestoreContext:
    """What a restore may need besides the saved state."""

    train_data: AvalancheDataset  # the training split; buffers are subsets of it
    basic_model: nn.Module  # the basic-phase model as the strategy sees it (teacher of 'cfer')


@dataclass(frozen=True)
class StrategyState:
    """How to save and restore one strategy's memory between experiences."""

    capture: Callable[[SupervisedTemplate], dict[str, Any]]  # strategy -> tensors and plain values
    restore: Callable[[SupervisedTemplate, dict[str, Any], RestoreContext], None]  # inverse


def _plugin(strategy: SupervisedTemplate, kind: type) -> Any:
    for plugin in strategy.plugins:
        if isinstance(plugin, kind):
            return plugin
    raise LookupError(f"strategy {type(strategy).__name__} has no {kind.__name__}")


def _ids(data: AvalancheDataset) -> torch.Tensor:
    return torch.as_tensor(list(data.sample_id), dtype=torch.long)


def _nothing(strategy: SupervisedTemplate) -> dict[str, Any]:
    return {}


def _restore_nothing(strategy: SupervisedTemplate, state: dict[str, Any], context: RestoreContext) -> None:
    return None


def _capture_cfer(strategy: SupervisedTemplate) -> dict[str, Any]:
    return _plugin(strategy, PSMRReplayPlugin).storage_policy.state_dict()


def _restore_cfer(strategy: SupervisedTemplate, state: dict[str, Any], context: RestoreContext) -> None:
    _plugin(strategy, PSMRReplayPlugin).storage_policy.load_state_dict(state, context.train_data)
    distillation = next((p for p in strategy.plugins if isinstance(p, DistillationPlugin)), None)
    if (
        distillation is not None
        and distillation.teacher_mode == "basic"
        and strategy.clock.train_exp_counter > distillation.basic_experiences
    ):
        # the 'basic' teacher is the model at the start of the first incremental step, which the
        # zero-epoch basic experience leaves equal to the basic-phase model
        distillation.teacher = frozen_copy(context.basic_model).to(strategy.device)
        distillation.memo = TeacherMemo() if distillation.memoize else None
    means = next((p for p in strategy.plugins if isinstance(p, ExemplarHeadPlugin)), None)
    if means is not None and len(means.storage_policy.buffer):
        means.after_training_exp(strategy)  # the means of the restored memory, with the restored model


def _capture_reservoirs(memory: Any) -> dict[str, Any]:
    """A balanced buffer of Avalanche reservoir buffers (``Replay``'s by experience, GDumb's by class)."""
    groups = [
        {
            "key": int(key),
            "max_size": group.max_size,
            "sample_ids": _ids(group.buffer),
            "weights": group._buffer_weights.clone(),
        }
        for key, group in memory.buffer_groups.items()
    ]
    return {
        "max_size": memory.max_size,
        "num_experiences": getattr(memory, "_num_exps", 0),
        "seen_classes": sorted(int(c) for c in getattr(memory, "seen_classes", ())),
        "groups": groups,
    }


def _restore_reservoirs(memory: Any, state: dict[str, Any], context: RestoreContext) -> None:
    memory.max_size = int(state["max_size"])
    if hasattr(memory, "_num_exps"):
        memory._num_exps = int(state["num_experiences"])
    if hasattr(memory, "seen_classes"):
        memory.seen_classes = set(state["seen_classes"])
    memory.buffer_groups.clear()
    for saved in state["groups"]:
        group = ReservoirSamplingBuffer(int(saved["max_size"]))
        group.buffer = context.train_data.subset(saved["sample_ids"].tolist())
        group._buffer_weights = saved["weights"]
        memory.buffer_groups[int(saved["key"])] = group


def _capture_replay(strategy: SupervisedTemplate) -> dict[str, Any]:
    return _capture_reservoirs(_plugin(strategy, ReplayPlugin).storage_policy)


def _restore_replay(strategy: SupervisedTemplate, state: dict[str, Any], context: RestoreContext) -> None:
    _restore_reservoirs(_plugin(strategy, ReplayPlugin).storage_policy, state, context)


def _capture_gdumb(strategy: SupervisedTemplate) -> dict[str, Any]:
    gdumb = _plugin(strategy, GDumbPlugin)
    return _capture_reservoirs(gdumb.storage_policy) | {
        # GDumb retrains from this model (grown to the classes seen) at every experience
        "init_model": {key: value.detach().cpu() for key, value in gdumb.init_model.state_dict().items()},
    }


def _restore_gdumb(strategy: SupervisedTemplate, state: dict[str, Any], context: RestoreContext) -> None:
    gdumb = _plugin(strategy, GDumbPlugin)
    _restore_reservoirs(gdumb.storage_policy, state, context)
    # the restored model has the same architecture (head grown alike); only its weights differ
    gdumb.init_model = copy.deepcopy(strategy.model)
    gdumb.init_model.load_state_dict(state["init_model"])


def _capture_ewc(strategy: SupervisedTemplate) -> dict[str, Any]:
    ewc = _plugin(strategy, EWCPlugin)

    def tensors(by_experience: dict[int, dict[str, Any]]) -> dict[int, dict[str, torch.Tensor]]:
        return {
            int(exp): {name: data.data.detach().cpu() for name, data in params.items()}
            for exp, params in by_experience.items()
        }

    return {"saved_params": tensors(ewc.saved_params), "importances": tensors(ewc.importances)}


def _restore_ewc(strategy: SupervisedTemplate, state: dict[str, Any], context: RestoreContext) -> None:
    ewc = _plugin(strategy, EWCPlugin)

    def params(saved: dict[int, dict[str, torch.Tensor]]) -> defaultdict[int, dict[str, ParamData]]:
        return defaultdict(
            dict,
            {
                int(exp): {
                    name: ParamData(name, init_tensor=tensor.to(strategy.device), device=strategy.device)
                    for name, tensor in by_name.items()
                }
                for exp, by_name in saved.items()
            },
        )

    ewc.saved_params = params(state["saved_params"])
    ewc.importances = params(state["importances"])


def _capture_lwf(strategy: SupervisedTemplate) -> dict[str, Any]:
    lwf = _plugin(strategy, LwFPlugin).lwf
    classes = {int(task): sorted(int(c) for c in seen) for task, seen in lwf.prev_classes_by_task.items()}
    return {"expcount": lwf.expcount, "prev_classes_by_task": classes}


def _restore_lwf(strategy: SupervisedTemplate, state: dict[str, Any], context: RestoreContext) -> None:
    lwf = _plugin(strategy, LwFPlugin).lwf
    lwf.expcount = int(state["expcount"])
    lwf.prev_classes_by_task = defaultdict(
        set, {int(task): set(seen) for task, seen in state["prev_classes_by_task"].items()}
    )
    if lwf.expcount > 0:
        # LwF snapshots the model at the end of every experience, which is the restored model
        lwf.prev_model = copy.deepcopy(strategy.model)


def _capture_statistics_head(strategy: SupervisedTemplate) -> dict[str, Any]:
    head, backbone = strategy.model.head, strategy.model.backbone
    # a multi-layer backbone's standardisation was fitted on the first experience
    standardisation = ({key: value.detach().cpu() for key, value in backbone.named_buffers(recurse=False)}
                       if isinstance(backbone, MultiLayerFeatures) else {})
    plugin = _plugin(strategy, StatisticsHeadPlugin)
    return {"head": {key: value.detach().cpu() for key, value in head.state_dict().items()},
            "standardisation": standardisation,
            "ridge": float(getattr(head, "ridge", 0.0)),
            "choose_ridge": bool(plugin.choose_ridge),
            # a calibration's base classes' features, kept from the first experience
            "calibration_rows": list(plugin.calibration.base_rows) if plugin.calibration is not None else []}


def _restore_statistics_head(strategy: SupervisedTemplate, state: dict[str, Any], context: RestoreContext) -> None:
    head = strategy.model.head
    for key, value in state["head"].items():  # buffers grow with the classes: replace, not copy into
        setattr(head, key, value.to(strategy.device))
    for key, value in state.get("standardisation", {}).items():
        setattr(strategy.model.backbone, key, value.to(strategy.device))
    if hasattr(head, "ridge"):
        head.ridge = state["ridge"]
    plugin = _plugin(strategy, StatisticsHeadPlugin)
    plugin.choose_ridge = state["choose_ridge"]
    if plugin.calibration is not None:
        plugin.calibration.base_rows = [rows.float() for rows in state.get("calibration_rows", [])]


CFER_STATE = StrategyState(_capture_cfer, _restore_cfer)
"""The PSMR memory (and the basic teacher) of ``'cfer'`` and its variants."""
NO_STATE = StrategyState(_nothing, _restore_nothing)
"""For strategies that carry nothing between experiences besides the model and optimizer."""
REPLAY_STATE = StrategyState(_capture_replay, _restore_replay)
LWF_STATE = StrategyState(_capture_lwf, _restore_lwf)
EWC_STATE = StrategyState(_capture_ewc, _restore_ewc)
GDUMB_STATE = StrategyState(_capture_gdumb, _restore_gdumb)
STATISTICS_HEAD_STATE = StrategyState(_capture_statistics_head, _restore_statistics_head)
"""The accumulated statistics of the training-free heads (``'ncm'``, ``'ranpac'``, ``'ranpac-layers'``)."""
