"""The dependency rules of the code base, enforced on every module's imports (lazy ones included).

Layers, bottom to top; each may import only the layers listed for it (and itself):

* ``cfer.taxonomy``, ``cfer.io``, ``cfer.registry``: nothing of cfer;
* ``cfer.config``, ``cfer.reports``: ``cfer.io``;
* ``cfer.distributed``: ``cfer.io``: how work is spread (Ray tasks, torchrun ranks), knowing nothing of the work;
* ``cfer.core``: plain-PyTorch algorithm cores; ``cfer.io``, ``cfer.registry``, never Avalanche;
* ``cfer.data``: taxonomy, io, registry, config;
* ``cfer.models``: io, config, registry, core;
* ``strategies``: the Avalanche adapters; core, io, registry;
* ``cfer.training``: data, models, core, distributed and the bottom layers;
* ``cfer.continual``: strategies, training and everything below;
* ``cfer.fewshot``, ``cfer.cam``: everything below ``cfer.cli``, not each other;
* ``cfer.distill``: core, data, models, training, distributed and the bottom layers (no Avalanche, no strategies);
* ``cfer.predict``: data, models, cam and the bottom layers: inference needs nothing that trains, and
  ``cfer.cam`` only for ``--cam`` overlays (imported lazily);
* ``cfer.cli``: everything; nothing imports it but ``cfer.__main__`` (``python -m cfer``, ``torchrun -m cfer``).

Avalanche is imported by ``strategies`` and, within ``cfer``, only by the benchmark builder
(``cfer.continual.benchmark``) and the evaluation plugin's module (``cfer.continual.evaluation``);
no module of ``cfer`` imports Avalanche's training templates or strategies.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BOTTOM = {"cfer.taxonomy", "cfer.io", "cfer.registry"}
BASE = BOTTOM | {"cfer.config", "cfer.reports"}
ALLOWED: dict[str, set[str]] = {
    "cfer.taxonomy": set(),
    "cfer.io": set(),
    "cfer.registry": set(),
    "cfer.config": {"cfer.io"},
    "cfer.reports": {"cfer.io"},
    "cfer.distributed": {"cfer.io"},
    "cfer.core": {"cfer.io", "cfer.registry"},
    "cfer.data": BASE,
    "cfer.models": BASE | {"cfer.core"},
    "strategies": BASE | {"cfer.core"},
    "cfer.training": BASE | {"cfer.core", "cfer.data", "cfer.models", "cfer.distributed"},
    "cfer.continual": BASE | {"cfer.core", "cfer.data", "cfer.models", "cfer.training", "cfer.distributed", "strategies"},
    "cfer.fewshot": BASE | {"cfer.core", "cfer.data", "cfer.models", "cfer.training", "cfer.continual",
                            "cfer.distributed", "strategies"},
    "cfer.cam": BASE | {"cfer.core", "cfer.data", "cfer.models", "cfer.training", "cfer.continual", "strategies"},
    "cfer.distill": BASE | {"cfer.core", "cfer.data", "cfer.models", "cfer.training", "cfer.distributed"},
    "cfer.predict": BASE | {"cfer.data", "cfer.models", "cfer.cam"},
    "cfer.cli": set(),  # anything: checked separately
    "cfer.__main__": {"cfer.cli"},
    "cfer": set(),  # cfer/__init__.py
}
AVALANCHE_IN_CFER = {"cfer.continual.benchmark", "cfer.continual.evaluation"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted([*ROOT.glob("cfer/**/*.py"), *ROOT.glob("strategies/**/*.py")]):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _layer(module: str) -> str | None:
    candidates = [layer for layer in ALLOWED if module == layer or module.startswith(layer + ".")]
    return max(candidates, key=len) if candidates else None


MODULES = _modules()


def test_every_module_belongs_to_a_layer() -> None:
    assert MODULES, "no modules found"
    assert [name for name in MODULES if _layer(name) is None] == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_only_the_layers_below(module: str) -> None:
    layer = _layer(module)
    if layer in ("cfer.cli", "cfer", "cfer.__main__"):
        return
    own = {name for name in _imports(MODULES[module]) if name.split(".")[0] in ("cfer", "strategies")}
    imported_layers = {_layer(name) for name in own} - {None, layer}
    assert imported_layers <= ALLOWED[layer], f"{module} imports {sorted(imported_layers - ALLOWED[layer])}"


@pytest.mark.parametrize("module", sorted(name for name in MODULES if name.startswith("cfer")))
def test_avalanche_stays_in_the_adapters(module: str) -> None:
    avalanche = {name for name in _imports(MODULES[module]) if name.split(".")[0] == "avalanche"}
    if module not in AVALANCHE_IN_CFER:
        assert avalanche == set(), f"{module} imports {sorted(avalanche)}; only strategies/ may"
    templates = {name for name in avalanche if name.startswith(("avalanche.training.templates",
                                                                 "avalanche.training.supervised"))}
    assert templates == set()


def test_nothing_imports_the_cli() -> None:
    importers = [name for name, path in MODULES.items()
                 if name not in ("cfer.cli", "cfer.__main__") and "cfer.cli" in _imports(path)]
    assert importers == []
