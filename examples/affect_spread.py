"""Per-category spread of valence and arousal in a ``cfer synth`` manifest (or any CFEE-layout manifest).

Usage::

    cfer synth --out runs/synth --size 64
    python examples/affect_spread.py runs/synth/manifest.csv

Prints a Markdown table: per category, the count, the mean and standard deviation of valence and of
arousal, the largest absolute value, and the share of images on the bound (|v| or |a| >= 0.999).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def spread(manifest: Path) -> dict[str, np.ndarray]:
    """Category -> (N, 2) valence and arousal, in manifest order."""
    rows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with open(manifest, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows[row["category"]].append((float(row["valence"]), float(row["arousal"])))
    return {name: np.asarray(values) for name, values in rows.items()}


def markdown(affect: dict[str, np.ndarray]) -> str:
    lines = ["| category | n | valence mean | valence std | arousal mean | arousal std | max abs | on ±1 |",
             "|---|---|---|---|---|---|---|---|"]
    for name, a in affect.items():
        lines.append(f"| {name} | {len(a)} | {a[:, 0].mean():+.3f} | {a[:, 0].std():.3f} | {a[:, 1].mean():+.3f} | "
                     f"{a[:, 1].std():.3f} | {np.abs(a).max():.3f} | {np.mean(np.abs(a).max(1) >= 0.999):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("manifest", type=Path)
    args = parser.parse_args(argv)
    try:
        affect = spread(args.manifest)
    except (OSError, KeyError, ValueError) as error:
        print(f"affect_spread: cannot read {args.manifest} ({error!r}): give the manifest.csv that cfer synth "
              "writes, with category, valence and arousal columns", file=sys.stderr)
        return 2
    print(markdown(affect), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
