"""The plain-PyTorch cores and the packages below the adapters load without Avalanche.

Checked in a fresh interpreter, so that nothing imported by another test hides an import.
"""

from __future__ import annotations

import subprocess
import sys

PACKAGES = ("cfer.core", "cfer.models", "cfer.data", "cfer.training")


def test_packages_import_without_avalanche_or_the_adapters() -> None:
    code = "\n".join([
        "import importlib, sys",
        "for package in %r:" % (PACKAGES,),
        "    importlib.import_module(package)",
        "    print(package, 'avalanche' in sys.modules, 'strategies' in sys.modules)",
    ])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == [f"{package} False False" for package in PACKAGES], result.stderr
