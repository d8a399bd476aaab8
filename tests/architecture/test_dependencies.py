"""``pyproject.toml`` declares every third-party package that the library imports.

A package of an optional extra (``ray``: ``pip install 'cfer[ray]'``) is imported only inside the
functions that need it, so that the main install imports without it.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {_canonical(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]) for requirement in requirements}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _declared() -> set[str]:
    return _names(_project()["dependencies"])


def _optional() -> set[str]:
    """The packages of the optional extras the library uses (not the test tools of ``dev``)."""
    extras = _project()["optional-dependencies"]
    return set().union(*(_names(requirements) for extra, requirements in extras.items() if extra != "dev"))


def _top_level_imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"cfer", "strategies", "__future__"}


def _trees() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(encoding="utf-8"))
            for path in [*ROOT.glob("cfer/**/*.py"), *ROOT.glob("strategies/**/*.py")]}


@functools.lru_cache(maxsize=None)
def _distributions() -> dict[str, list[str]]:
    """Top-level module -> the distributions providing it; scanning them takes seconds, so once per session."""
    return importlib.metadata.packages_distributions()


def _providers(module: str) -> set[str]:
    return {_canonical(name) for name in _distributions().get(module, [module])}


def test_every_imported_package_is_declared() -> None:
    declared = _declared() | _optional()
    undeclared = {}
    for module in sorted(set().union(*map(_top_level_imports, _trees().values()))):
        if not _providers(module) & declared:
            undeclared[module] = sorted(_providers(module))
    assert undeclared == {}, f"imported but not in pyproject.toml dependencies: {undeclared}"


def test_optional_packages_are_imported_inside_functions_only() -> None:
    optional = _optional() - _declared()
    assert optional, "no optional extra: this test checks nothing"
    at_module_level = {}
    for path, tree in _trees().items():
        # what runs on import: the module's own statements, not the bodies of its functions
        outside = [node for node in tree.body if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                        ast.ClassDef))]
        names = set().union(set(), *(_top_level_imports(ast.Module(body=[node], type_ignores=[])) for node in outside))
        found = sorted(module for module in names if _providers(module) & optional)
        if found:
            at_module_level[path.relative_to(ROOT).as_posix()] = found
    assert at_module_level == {}, f"optional packages imported when the module loads: {at_module_level}"
