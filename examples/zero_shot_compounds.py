"""Zero-shot compound accuracy (K = 0): compound prototypes built from the basic classes alone.

Reads the backbone features a ``cfer fewshot`` run keeps (``OUT/features.pt``: the basic-phase
backbone over every image, with the shot-pool, validation and held-out subject masks), builds each
compound's prototype with :func:`cfer.core.composition.compositional_prior` from the basic classes'
training means, and scores the compound images of validation and held-out subjects among the compound
classes only (chance 1/15), ABAW's way of scoring compounds. No compound image is used, except by the
``every image`` row, the nearest class mean of each compound's training images, the reference a prior
should approach.

Two priors are scored: the components' prototypes combined, ``r + s·((m_1 − r) + (m_2 − r))``, and,
where the data carries AU intensities, the AU map (:class:`~cfer.core.composition.AUFeatureMap`)
fitted on the basic training images and applied to each compound's prototypical AUs.

The ridge of the AU map, the strength ``s`` (0.5 = the plain mean of the two components' prototypes,
the baseline; 1 = the additive prior) and the centring are chosen on validation subjects and reported on held-out ones.

    cfer fewshot --out runs/fs0 --methods teen --set paper.enabled=false --set episodic.enabled=false
    python examples/zero_shot_compounds.py --features runs/fs0/features.pt --out runs/zero_shot.json
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from cfer.config import load_config
from cfer.core.composition import AUFeatureMap, component_pairs, compositional_prior, nearest_prototype
from cfer.core.imprinting import class_means
from cfer.data.sources import load_dataset
from cfer.fewshot.config import FewShotConfig
from cfer.io import load_torch_file, write_json
from cfer.taxonomy import BASIC, COMPOUND, get_category

STRENGTHS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.5)
RIDGES = (0.01, 1.0, 10.0, 100.0)


def _accuracy(features: torch.Tensor, targets: torch.Tensor, prototypes: torch.Tensor,
              center: torch.Tensor | None) -> float:
    """Share of compound images whose nearest prototype is their own; targets index the prototypes."""
    return float((nearest_prototype(features, prototypes, center).argmax(1) == targets).float().mean())


def _local(targets: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Each target's position in ``ids`` (targets must all be in ``ids``), shape like ``targets``."""
    lookup = torch.full((int(max(targets.max(), ids.max())) + 1,), -1, dtype=torch.int64)
    lookup[ids] = torch.arange(len(ids))
    return lookup[targets]


def evaluate(stored: dict[str, Any], intensities: torch.Tensor | None = None,
             au_ids: tuple[int, ...] = (), backbone: str = "basic") -> dict[str, Any]:
    """Zero-shot accuracies of every prior on validation and held-out subjects.

    Args:
        stored: A ``cfer fewshot`` run's ``features.pt``.
        intensities: The images' AU intensities, shape ``(N, A)``, in the features' order; without
            them the AU prior is not scored.
        au_ids: The AU number of each column.
        backbone: Which of its feature sets: ``basic`` (pooled) or ``layers`` (multi-layer, when a method read them).
    """
    if backbone not in stored["backbones"]:
        raise SystemExit(f"the features file has no {backbone!r} features: run `cfer fewshot` with compose first")
    fields = stored["backbones"][backbone]
    features, targets, classes = fields["features"].float(), fields["targets"], list(fields["classes"])
    basic = [c for c in BASIC if c in classes]
    compounds = list(stored["compounds"])
    pool = stored["pool"].bool()
    basic_ids = torch.tensor([classes.index(c) for c in basic])
    compound_ids = torch.tensor([classes.index(c) for c in compounds])
    in_basic = pool & torch.isin(targets, basic_ids)
    means = class_means(features[in_basic], _local(targets[in_basic], basic_ids), len(basic))
    reference = means.mean(0)
    pairs = component_pairs([get_category(name).components for name in compounds], basic)

    def scored(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = mask.bool() & torch.isin(targets, compound_ids)
        return features[chosen], _local(targets[chosen], compound_ids)

    splits = {"validation": scored(stored["validation"]), "held_out": scored(stored["held_out"])}
    rows = []
    for centered in (False, True):
        center = reference if centered else None
        for strength in STRENGTHS:
            prototypes = compositional_prior(means, pairs, strength, reference)
            rows.append({"strength": strength, "centered": centered,
                         **{name: _accuracy(x, y, prototypes, center) for name, (x, y) in splits.items()}})
    au_rows = [] if intensities is None else [
        {"ridge": ridge, "centered": centered,
         **{name: _accuracy(x, y, prototypes, reference if centered else None) for name, (x, y) in splits.items()}}
        for ridge in RIDGES
        for prototypes in [_au_prior(intensities[in_basic], features[in_basic], ridge, compounds, au_ids)]
        for centered in (False, True)]
    in_compound = pool & torch.isin(targets, compound_ids)
    every = class_means(features[in_compound], _local(targets[in_compound], compound_ids), len(compounds))
    reference_rows = {centered: {name: _accuracy(x, y, every, reference if centered else None)
                                 for name, (x, y) in splits.items()} for centered in (False, True)}
    chosen = max(rows, key=lambda row: row["validation"])
    baseline = next(row for row in rows if row["strength"] == 0.5 and not row["centered"])
    return {"compounds": compounds, "chance": 1 / len(compounds), "rows": rows, "baseline": baseline,
            "chosen": chosen, "au_rows": au_rows,
            "au_chosen": max(au_rows, key=lambda row: row["validation"]) if au_rows else None,
            "every_image_ncm": {"raw": reference_rows[False], "centered": reference_rows[True]},
            "images": {name: len(y) for name, (_, y) in splits.items()}}


def _au_prior(intensities: torch.Tensor, features: torch.Tensor, ridge: float, compounds: list[str],
              au_ids: tuple[int, ...]) -> torch.Tensor:
    """Compound prototypes from the AU map fitted on basic images, at each compound's own AUs."""
    au_map = AUFeatureMap(intensities, features, ridge)
    return au_map(au_map.template([get_category(name).aus for name in compounds], au_ids))


def _intensities(features_path: Path, stored: dict[str, Any]) -> tuple[torch.Tensor | None, tuple[int, ...]]:
    """The AU intensities of the run's images, rebuilt from its config; None when its data has none."""
    config = load_config(FewShotConfig, features_path.parent / "config.yaml")
    dataset = load_dataset(config.data, BASIC + COMPOUND).select_classes(BASIC + tuple(stored["compounds"]))
    fields = stored["backbones"]["basic"]
    if not (torch.equal(dataset.targets, fields["targets"]) and torch.equal(dataset.subject_ids, fields["subject_ids"])):
        raise SystemExit(f"the images of {features_path.parent / 'config.yaml'} are not those of {features_path}: "
                         "run `cfer fewshot` again into that folder")
    if dataset.au_intensities is None:
        print(f"{config.data.source} data carries no AU intensities: the AU prior is not scored")
        return None, ()
    return dataset.au_intensities, dataset.au_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=Path, required=True, help="features.pt of a `cfer fewshot` run")
    parser.add_argument("--backbone", choices=["basic", "layers"], default="basic",
                        help="the pooled features (basic) or the multi-layer ones that compose reads (layers)")
    parser.add_argument("--out", type=Path, default=None, help="write the results here as JSON")
    args = parser.parse_args()
    if not args.features.is_file():
        parser.error(f"{args.features} not found: run `cfer fewshot --out DIR` first and pass DIR/features.pt")
    stored = load_torch_file(args.features, "run `cfer fewshot` again to rewrite it")
    result = evaluate(stored, *_intensities(args.features, stored), backbone=args.backbone)
    print(f"zero-shot compound accuracy, chance {result['chance']:.3f}; images {result['images']}")
    print("strength centered validation held_out")
    for row in result["rows"]:
        print(f"{row['strength']:8.2f} {row['centered']!s:8} {row['validation']:10.3f} {row['held_out']:8.3f}")
    print(f"baseline (plain mean): held-out {result['baseline']['held_out']:.3f}; chosen on validation "
          f"s={result['chosen']['strength']}, centered={result['chosen']['centered']}: "
          f"held-out {result['chosen']['held_out']:.3f}; every-image NCM {result['every_image_ncm']}")
    for row in result["au_rows"]:
        print(f"AU map ridge {row['ridge']:g} centered {row['centered']!s:5}: validation {row['validation']:.3f}, "
              f"held-out {row['held_out']:.3f}")
    if result["au_chosen"] is not None:
        chosen = result["au_chosen"]
        print(f"AU prior chosen on validation (ridge {chosen['ridge']:g}, centered {chosen['centered']}): "
              f"held-out {chosen['held_out']:.3f}")
    if args.out is not None:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
