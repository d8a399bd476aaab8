"""Choose ``ranpac-layers``' layers on validation subjects: RanPAC's stream on each candidate feature set.

Reads a finished ``cfer train-incremental`` run (its basic model and data settings), computes the
basic backbone's features once per image for every candidate (:class:`cfer.core.layers.MultiLayerFeatures`),
and runs the class-incremental stream of ``ranpac`` (the six basic classes, then one compound per
step, every training image of the basic model's training subjects) on each, scoring the
**validation** subjects, which nothing reports: the chosen layers can then be reported on
held-out subjects and other data seeds. Prints and writes (``--out``, JSON, atomically) the
Overall Accuracy (mean over steps of the accuracy on the seen classes) and the final accuracy.

    cfer train-incremental --out runs/seed0 --strategies ranpac
    python examples/choose_layers.py --run runs/seed0 --out runs/choose_layers.json

``none`` is ``ranpac`` itself (the pooled features, not standardised); ``''`` is the pooled features
standardised.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from cfer.config import load_config
from cfer.continual import IncrementalConfig
from cfer.core.layers import MultiLayerFeatures
from cfer.core.prototypes import RandomProjectionRidge
from cfer.data.dataset import FaceExpressionDataset
from cfer.data.sources import load_dataset
from cfer.fewshot.features import extract_features
from cfer.fewshot.runner import _subject_masks
from cfer.io import write_json
from cfer.taxonomy import BASIC, COMPOUND
from cfer.training.basic import load_basic_model

CANDIDATES = ["none", "", "blocks.-3:1,blocks.-2:1,blocks.-1:1", "blocks.-3:2,blocks.-2:2,blocks.-1:2",
              "blocks.-3:4,blocks.-2:2,blocks.-1:2", "blocks.-4:4,blocks.-3:4,blocks.-2:2,blocks.-1:2"]


@torch.no_grad()
def features_of(model: torch.nn.Module, dataset: FaceExpressionDataset, layers: str, fit: torch.Tensor) -> torch.Tensor:
    """Features ``(N, D)`` of the dataset's images: standardised on the rows ``fit`` unless 'none'."""
    config = model.data_config
    extractor = MultiLayerFeatures(model.backbone, [spec for spec in layers.split(",") if spec and layers != "none"])
    raw = extract_features(extractor.raw, dataset, config["mean"], config["std"]).features
    if layers == "none":
        return raw
    extractor.fit(raw[fit])
    return extractor.standardise(raw)


def stream(x: torch.Tensor, y: torch.Tensor, train: torch.Tensor, scored: torch.Tensor,
           order: list[int]) -> tuple[float, float]:
    """RanPAC over basic then ``order``'s compounds: (Overall Accuracy, final accuracy) on ``scored``."""
    remap = torch.full((int(y.max()) + 1,), -1, dtype=torch.long)
    remap[torch.tensor(list(range(len(BASIC))) + order)] = torch.arange(len(BASIC) + len(order))
    labels = remap[y]
    head = RandomProjectionRidge(x.shape[1], 2000, 1.0, 0)
    accuracies = []
    for seen in range(len(BASIC), len(BASIC) + len(order) + 1):
        new = train & ((labels < seen) if seen == len(BASIC) else (labels == seen - 1))
        head.update(x[new], labels[new], solve=seen > len(BASIC))
        if seen == len(BASIC):
            head.choose_ridge(x[new], labels[new])
        mask = scored & (labels < seen)
        accuracies.append(float((head(x[mask]).argmax(1) == labels[mask]).float().mean()))
    return 100 * float(np.mean(accuracies)), 100 * accuracies[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished cfer train-incremental run directory")
    parser.add_argument("--candidates", nargs="*", default=CANDIDATES, help="comma-separated layer lists")
    parser.add_argument("--orders", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = load_config(IncrementalConfig, Path(args.run) / "config.yaml")
    model = load_basic_model(Path(args.run) / "basic")[0].eval()
    dataset = load_dataset(config.basic.data, BASIC + COMPOUND).select_classes(BASIC + COMPOUND)
    train, validation, _ = (torch.from_numpy(m) for m in _subject_masks(Path(args.run) / "basic", dataset.subject_ids))
    y = dataset.targets
    rng = np.random.default_rng(0)
    orders = [[len(BASIC) + int(i) for i in rng.permutation(len(COMPOUND))] for _ in range(args.orders)]
    results = {}
    for layers in tqdm(args.candidates, desc="candidates"):
        x = features_of(model, dataset, layers, train & (y < len(BASIC)))
        overall, final = np.mean([stream(x, y, train, validation, order) for order in orders], 0)
        results[layers or "(pooled, standardised)"] = {"overall_accuracy": overall, "final_accuracy": final,
                                                       "dim": x.shape[1]}
        print(f"{layers or '(pooled, standardised)':50s} {x.shape[1]:5d} columns: validation Overall "
              f"{overall:.1f}, final {final:.1f}", flush=True)
    if args.out is not None:
        write_json(args.out, {"run": args.run, "orders": args.orders, "scored": "validation", "results": results})


if __name__ == "__main__":
    main()
