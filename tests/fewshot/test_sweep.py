"""``cfer fewshot`` on a local Ray: every part a task, the same results as in the process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cfer.data.sources import DataConfig
from cfer.distributed import RayConfig
from cfer.fewshot import EpisodicConfig, FewShotConfig, FSCILConfig, PaperProtocolConfig, run_fewshot
from cfer.fewshot.runner import fewshot_parts, part_path
from cfer.fewshot.sweep import run_fewshot_sweep
from cfer.models.classifier import ModelConfig
from cfer.training.basic import BasicPhaseConfig

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = FewShotConfig(
    basic=BasicPhaseConfig(data=DataConfig(size=32, subjects=12), model=ModelConfig(pretrained="none"), folds=3,
                           fold=0, head_epochs=2, finetune_epochs=1, patience=1, batch_size=16, progress=False),
    data=DataConfig(size=32, subjects=16),
    methods=["imprint", "teen"],
    paper=PaperProtocolConfig(shots=[1], seeds=1, classes=["happily_surprised", "awed"]),
    fscil=FSCILConfig(n_way=5, shots=[1], orders=1, seeds=1),
    episodic=EpisodicConfig(n_way=3, shots=[1], n_query=2, episodes=4),
    device="cpu",
    progress=False,
)


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if "seconds" not in k and k not in ("out_dir",)}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def test_fewshot_on_ray_gives_the_in_process_results(ray_session, tmp_path: Path) -> None:
    expected = run_fewshot(TINY, tmp_path / "here")
    summary = run_fewshot_sweep(TINY, tmp_path / "there", RayConfig())
    for protocol, method in fewshot_parts(TINY):
        here, there = (json.loads(part_path(tmp_path / side, protocol, method).read_text()) for side in ("here", "there"))
        # (the parts' keys hash the basic model's file, whose metadata order safetensors varies by process)
        assert _without_timings(there["result"]) == _without_timings(here["result"]), (protocol, method)
    for key in ("paper", "fscil", "episodic", "subjects", "images"):
        assert _without_timings(summary[key]) == _without_timings(expected[key]), key
