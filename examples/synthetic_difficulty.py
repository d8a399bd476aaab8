"""How hard is the embedded synthetic dataset? Two reference accuracies on held-out subjects.

1. A logistic regression on raw pixels (scikit-learn).
2. A small CNN trained briefly (plain PyTorch).

Each on the 6 basic classes and on all 22 categories. Neither should be near 100%: the renderer's
nuisance (pose, light, identity, noise, blur) must force a model to learn the expression.

    python examples/synthetic_difficulty.py --train-subjects 150 --test-subjects 80
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from cfer.data.synthetic import SyntheticConfig, SyntheticFaces
from cfer.taxonomy import BASIC, CATEGORY_NAMES


def small_cnn(num_classes: int) -> nn.Module:
    def block(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(block(3, 32), block(32, 64), block(64, 128), block(128, 128),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes))


def train_cnn(train: SyntheticFaces, test: SyntheticFaces, epochs: int, seed: int) -> float:
    torch.manual_seed(seed)
    model = small_cnn(len(train.classes))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    images = train.images.float() / 255.0
    steps = epochs * ((len(images) + 63) // 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(images)).split(64):
            x = images[batch]
            flip = torch.rand(len(x)) < 0.5
            x[flip] = x[flip].flip(-1)
            loss = nn.functional.cross_entropy(model(x), train.targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(x.float() / 255.0).argmax(1) for x in test.images.split(256)])
    return accuracy_score(test.targets.numpy(), predictions.numpy())


def logistic_regression(train: SyntheticFaces, test: SyntheticFaces, pixels: int) -> float:
    def features(dataset: SyntheticFaces) -> np.ndarray:
        images = torch.nn.functional.interpolate(dataset.images.float(), size=pixels, mode="area")
        return images.flatten(1).numpy() / 255.0

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=0.01))
    model.fit(features(train), train.targets.numpy())
    return accuracy_score(test.targets.numpy(), model.predict(features(test)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-subjects", type=int, default=150)
    parser.add_argument("--test-subjects", type=int, default=80)
    parser.add_argument("--size", type=int, default=48, help="image side for the CNN")
    parser.add_argument("--lr-pixels", type=int, default=32, help="image side for the logistic regression")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the results to this JSON file")
    args = parser.parse_args()

    results = {}
    for label, categories in (("basic", BASIC), ("all 22", CATEGORY_NAMES)):
        train = SyntheticFaces(SyntheticConfig(subjects=args.train_subjects, size=args.size, categories=categories))
        test = SyntheticFaces(SyntheticConfig(subjects=args.test_subjects, size=args.size, categories=categories,
                                              first_subject=args.train_subjects))
        start = time.perf_counter()
        lr = logistic_regression(train, test, args.lr_pixels)
        cnn = train_cnn(train, test, args.epochs, args.seed)
        results[label] = {"classes": len(categories), "chance": 1 / len(categories),
                          "logistic_regression": lr, "small_cnn": cnn, "seconds": time.perf_counter() - start}
        print(f"{label:>7}: chance {1 / len(categories):.3f}  logistic regression {lr:.3f}  "
              f"small CNN ({args.epochs} epochs) {cnn:.3f}  [{len(train)} train / {len(test)} test images]")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
