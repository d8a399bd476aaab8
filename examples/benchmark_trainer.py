"""Throughput of cfer's training loop against a bare PyTorch loop with the same model and batches.

    python examples/benchmark_trainer.py --backbone efficientnet_lite0 --size 64 --batch-size 32

Both loops train the same model (all parameters trainable, as in the fine-tuning stage) on the same
in-memory uint8 images at the same batch size and resolution. The bare loop only converts, normalises,
runs forward/backward and steps; cfer's :class:`~cfer.training.loop.Trainer` also augments each batch
(per-image flip, rotation, zoom, shift) and tracks loss and accuracy. Reports images per second of each
and their ratio, best of ``--repeats`` epochs after a warm-up epoch.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from cfer.data.synthetic import SyntheticConfig, SyntheticFaces
from cfer.models.classifier import ModelConfig, create_model
from cfer.taxonomy import BASIC
from cfer.training.augment import AugmentConfig, BatchAugment, make_preprocess
from cfer.training.loop import Trainer, make_loader


def bare_epoch(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, batch_size: int,
               optimizer: torch.optim.Optimizer, mean: torch.Tensor, std: torch.Tensor) -> float:
    model.train()
    start = time.perf_counter()
    for batch in torch.randperm(len(images)).split(batch_size):
        x = (images[batch].float() / 255.0 - mean) / std
        loss = nn.functional.cross_entropy(model(x), targets[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--subjects", type=int, default=64, help="synthetic subjects (x 6 basic classes images)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data = SyntheticFaces(SyntheticConfig(subjects=args.subjects, size=args.size, categories=BASIC))
    config = ModelConfig(backbone=args.backbone, pretrained="none")
    torch.manual_seed(0)
    model = create_model(config, num_classes=len(BASIC))
    mean = torch.tensor(model.data_config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.data_config["std"]).view(1, 3, 1, 1)

    bare_optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    bare_epoch(model, data.images, data.targets, args.batch_size, bare_optimizer, mean, std)  # warm-up
    bare = max(bare_epoch(model, data.images, data.targets, args.batch_size, bare_optimizer, mean, std)
               for _ in range(args.repeats))

    results = {}
    for label, augment in (("cfer Trainer (with augmentation)", AugmentConfig()),
                           ("cfer Trainer (augmentation off)", AugmentConfig(enabled=False))):
        trainer = Trainer(model, make_preprocess(model.data_config["mean"], model.data_config["std"]),
                          augment=BatchAugment(augment), device="cpu", progress=False)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        loader = make_loader(data, args.batch_size, shuffle=True, device=torch.device("cpu"))
        trainer.train_epoch(loader, optimizer)  # warm-up
        results[label] = max(trainer.train_epoch(loader, optimizer).images_per_second for _ in range(args.repeats))

    print(f"{args.backbone} at {args.size} px, batch {args.batch_size}, {len(data)} images, "
          f"{torch.get_num_threads()} threads:")
    print(f"  bare PyTorch loop: {bare:.1f} images/s")
    for label, rate in results.items():
        print(f"  {label}: {rate:.1f} images/s = {rate / bare:.1%} of the bare loop")


if __name__ == "__main__":
    main()
