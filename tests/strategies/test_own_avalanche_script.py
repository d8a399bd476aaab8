"""cfer's strategy in a plain Avalanche script: a model with only the protocol's members, a non-face
stream (scikit-learn's digits), plain ``strategy.train(experience)`` calls, no cfer runner."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from torch import nn

from strategies import GrowingClassifier

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "own_avalanche_script.py"


@pytest.fixture(scope="module")
def script() -> dict:
    return runpy.run_path(str(SCRIPT))  # defines MLP and run() without running them


def test_the_model_has_only_the_protocols_members(script: dict) -> None:
    model = script["MLP"](5)
    assert isinstance(model, GrowingClassifier)
    extra = {name for name in dir(model) if not name.startswith("_")} - set(dir(nn.Module()))
    assert extra == {"backbone", "head", "num_classes", "add_classes"}
    assert not hasattr(model, "l2_penalty")


def test_cfer_learns_the_stream_far_better_than_naive_fine_tuning(script: dict) -> None:
    cfer, naive = script["run"]("cfer"), script["run"]("naive")
    # naive fine-tuning on one class per experience forgets everything but the last digit
    assert naive < 0.25
    assert cfer > naive + 0.4, (cfer, naive)


def test_the_readme_shows_the_script() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- own-avalanche-script -->")
    block = readme[start:].split("```python\n", 1)[1].split("```", 1)[0]
    script_lines = {line.strip() for line in SCRIPT.read_text(encoding="utf-8").splitlines()}
    missing = [line for line in block.splitlines() if line.strip() and line.strip() not in script_lines]
    assert missing == [], "the README's example is not the script's code"
