"""Choose a few-shot method's options on validation subjects: a grid of FSCIL runs on a run's cached features.

Reads the features a ``cfer fewshot`` run keeps (``OUT/features.pt``: the basic-phase backbone over
every image, with the shot-pool, validation and held-out masks) and runs FSCIL sessions of one method
for every combination of the given option values, scored on the **validation** subjects: nothing
then reads a held-out image, so the chosen options can be reported on held-out subjects and on other
data seeds. ``--score-on held_out`` reports a grid (ablations) on held-out subjects, never to choose. Prints and writes (``--out``, JSON, atomically) the final harmonic mean per K and setting.

    cfer fewshot --out runs/fs0 --protocol fscil --methods compose
    python examples/choose_fewshot_options.py --features runs/fs0/features.pt --method compose \\
        --grid prior_shots=2,5,10 --grid samples=200,800 --shots 1 5 --out runs/choose_compose.json
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from cfer.fewshot import FEWSHOT_METHODS, BaseSession, FeatureSet, FSCILConfig, run_fscil_method
from cfer.fewshot.methods import method_config
from cfer.io import load_torch_file, write_json
from cfer.models.heads import LinearHead
from cfer.taxonomy import BASIC


def _value(text: str) -> Any:
    """An option value as YAML would read it: a number, a boolean, or the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["a=1,2", "b=x"]`` -> ``{"a": [1, 2], "b": ["x"]}``."""
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise SystemExit(f"--grid {item!r}: write KEY=V1,V2,...")
        grid[key] = [_value(v) for v in values.split(",")]
    return grid


def split(stored: dict[str, Any], score_on: str = "validation", backbone: str = "basic"
          ) -> tuple[BaseSession, FeatureSet, FeatureSet, tuple[str, ...], list[str]]:
    """The base session, the shot pool and the scored images (``validation`` or ``held_out``) of a ``features.pt``,
    on one of its feature sets (``basic``: the pooled features; ``layers``: the multi-layer ones)."""
    if backbone not in stored["backbones"]:
        raise SystemExit(f"the features file has no {backbone!r} features: run `cfer fewshot` with a method that "
                         "reads them (compose) on that folder first")
    fields = stored["backbones"][backbone]
    features = FeatureSet(**{**fields, "classes": tuple(fields["classes"]), "au_ids": tuple(fields.get("au_ids", ()))})
    pool, validation = features.subset(stored["pool"].bool()), features.subset(stored[score_on].bool())
    basic = tuple(c for c in BASIC if c in features.classes)
    basic_ids = torch.tensor([features.classes.index(c) for c in basic])
    base_pool = pool.subset(torch.isin(pool.targets, basic_ids))
    lookup = {int(c): j for j, c in enumerate(basic_ids)}
    labels = torch.tensor([lookup[int(t)] for t in base_pool.targets])
    head = LinearHead(features.features.shape[1], len(basic))  # unused by the statistics methods
    base = BaseSession(head.eval(), base_pool.features, labels, classes=basic,
                       au_intensities=base_pool.au_intensities, au_ids=base_pool.au_ids)
    return base, pool, validation, basic, list(stored["compounds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=Path, required=True, help="features.pt of a `cfer fewshot` run")
    parser.add_argument("--method", required=True, choices=list(FEWSHOT_METHODS))
    parser.add_argument("--grid", action="append", default=[], help="KEY=V1,V2,...: values of one option; repeatable")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--orders", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--score-on", choices=["validation", "held_out"], default="validation",
                        help="the subjects scored: choose on validation; held_out only to report what was chosen")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not args.features.is_file():
        parser.error(f"{args.features} not found: run `cfer fewshot --out DIR` first and pass DIR/features.pt")
    if FEWSHOT_METHODS[args.method].trains:
        parser.error(f"{args.method} trains on the basic model's head, which features.pt does not hold; "
                     "choose among the training-free methods")
    grid = parse_grid(args.grid)
    stored = load_torch_file(args.features, "run `cfer fewshot` again")
    config = FSCILConfig(shots=args.shots, orders=args.orders, seeds=args.seeds)
    rows = []
    for values in tqdm(list(itertools.product(*grid.values())), desc=f"grid {args.method}"):
        options = dict(zip(grid, values))
        reads = getattr(method_config(args.method, options), "features", "pooled")
        base, pool, validation, basic, compounds = split(stored, args.score_on, "layers" if reads == "layers" else "basic")
        result = run_fscil_method(args.method, base, pool, validation, basic, compounds, config, options)
        scores = {k: entry["summary"]["final_harmonic_mean"]["mean"] for k, entry in result["per_shot"].items()}
        rows.append({"options": options, "final_harmonic_mean": scores})
        print(f"{options}: " + ", ".join(f"K={k} {v:.3f}" for k, v in scores.items()), flush=True)
    if args.out is not None:
        write_json(args.out, {"method": args.method, "features": str(args.features), "scored_on": args.score_on,
                              "orders": args.orders, "seeds": args.seeds, "rows": rows})


if __name__ == "__main__":
    main()
