"""Speed and accuracy of cfer's face detector and alignment on scikit-image's real photos.

Measures, on this machine's threads (``--threads``):

* faces/s of MTCNN on ``skimage.data.astronaut()`` (512 x 512) and on the 100 faces of
  ``skimage.data.lfw_subset()`` (25 x 25), and the share of LFW faces found (and of its 100 non-faces);
* the eye-line angle of the astronaut rotated by -30..30 degrees, before and after alignment.

    python examples/benchmark_faces.py --threads 2 --out runs/benchmark_faces.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from PIL import Image
from skimage import data

from cfer.data.faces import MTCNN, align_face, eye_angle
from cfer.io import write_json


def _faces_per_second(detector: MTCNN, images: list[np.ndarray], repeats: int) -> tuple[float, int]:
    detector.detect(images[0])  # warm-up
    start = time.perf_counter()
    found = 0
    for _ in range(repeats):
        found = sum(len(detector.detect(image)) > 0 for image in images)
    return repeats * len(images) / (time.perf_counter() - start), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="JSON file for the figures")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    detector = MTCNN()
    astronaut = data.astronaut()
    lfw = (data.lfw_subset() * 255).astype(np.uint8)
    results: dict[str, object] = {"threads": args.threads}
    results["astronaut_faces_per_second"], _ = _faces_per_second(detector, [astronaut], args.repeats * 4)
    results["lfw_faces_per_second"], found = _faces_per_second(detector, list(lfw[:100]), args.repeats)
    results["lfw_faces_found"] = found / 100
    results["lfw_non_faces_detected"] = sum(len(detector.detect(crop)) > 0 for crop in lfw[100:]) / 100
    angles = {}
    for degrees in (-30, -15, 0, 15, 30):
        tilted = np.asarray(Image.fromarray(astronaut).rotate(degrees, resample=Image.Resampling.BILINEAR))
        landmarks = detector.detect(tilted).landmarks[0]
        aligned = detector.detect(align_face(tilted, landmarks, size=160)).landmarks[0]
        angles[degrees] = {"before": round(eye_angle(landmarks), 2), "after": round(eye_angle(aligned), 2)}
    results["eye_angle_degrees"] = angles
    print(json.dumps(results, indent=2))
    if args.out:
        write_json(args.out, results)


if __name__ == "__main__":
    main()
