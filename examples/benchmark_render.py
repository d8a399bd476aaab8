"""Render rate of the synthetic face renderer on one core.

    python examples/benchmark_render.py --size 64 --images 2000

Reports images per second of wall time and of process CPU time (the latter does not count time the
process spends waiting for a busy core).
"""

from __future__ import annotations

import argparse
import time

import torch

from cfer.data.synthetic import FaceRenderer
from cfer.taxonomy import CATEGORY_NAMES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(1)  # one core, as the requirement states
    renderer = FaceRenderer(args.size, seed=0)
    keys = [(i // len(CATEGORY_NAMES), CATEGORY_NAMES[i % len(CATEGORY_NAMES)], 0) for i in range(args.images)]
    renderer.render(keys[:64])  # warm up caches of subjects and windows
    best_wall = best_cpu = 0.0
    for _ in range(args.repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        renderer.render(keys, batch_size=args.batch_size)
        best_wall = max(best_wall, args.images / (time.perf_counter() - wall))
        best_cpu = max(best_cpu, args.images / (time.process_time() - cpu))
    print(f"{args.size} px, batch {args.batch_size}: {best_wall:.0f} images/s wall, {best_cpu:.0f} images/s CPU "
          f"(best of {args.repeats}, {args.images} images, 1 thread)")


if __name__ == "__main__":
    main()
