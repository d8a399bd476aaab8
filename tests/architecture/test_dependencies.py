"""``pyproject.toml`` declares every third-party package that the library imports."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {_canonical(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]) for requirement in project["dependencies"]}


def _imported_top_levels() -> set[str]:
    names = set()
    for path in [*ROOT.glob("cfer/**/*.py"), *ROOT.glob("strategies/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"cfer", "strategies", "__future__"}


def test_every_imported_package_is_declared() -> None:
    distributions = importlib.metadata.packages_distributions()
    declared = _declared()
    undeclared = {}
    for module in sorted(_imported_top_levels()):
        providers = {_canonical(name) for name in distributions.get(module, [module])}
        if not providers & declared:
            undeclared[module] = sorted(providers)
    assert undeclared == {}, f"imported but not in pyproject.toml dependencies: {undeclared}"
