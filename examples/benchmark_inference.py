"""CPU inference speed: the classifier in PyTorch, TorchScript and ONNX Runtime, the face detector, and video.

    python examples/benchmark_inference.py --threads 2 --out runs/benchmark_inference.json

Measures, on ``--threads`` CPU threads (PyTorch's and ONNX Runtime's intra-op threads):

* **the classifier** (the default model: efficientnet_lite0 with the paper's head and the 21 basic and
  compound classes, or ``--model``'s checkpoint) at 64 and 224 px: latency at batch 1 (median and 95th
  percentile of ``--repeats`` single calls after a warm-up) and throughput at batch 32, for PyTorch
  eager, the TorchScript export and the ONNX export run by ONNX Runtime;
* **the face detector** (MTCNN) on one 640 x 480 video frame searched at 640 and at 320 px, and the
  ONet step that follows a face between full detections; with the other stages of a frame: decoding,
  cropping (alignment) and classifying;
* **end to end** on a 640 x 480 video with one moving face, written by this script with OpenCV from
  scikit-image's astronaut (or ``--video``): frames per second of :meth:`cfer.Predictor.predict_video`
  (decode, detect or follow, align, classify) with a full detection on every frame at 640 and at
  320 px, and with the default (320 px, every ``PredictorConfig.detect_every`` frames), in PyTorch and
  with the ONNX export.

The results are printed as tables and written to ``--out`` as JSON (atomically).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from skimage import data

from cfer.data.faces import MTCNN
from cfer.io import write_json
from cfer.models import ModelConfig, create_model, save_checkpoint
from cfer.models.export import export_model, load_exported
from cfer.predict import (
    FaceFinder,
    FaceTracker,
    LoadedClassifier,
    Predictor,
    PredictorConfig,
    VideoReader,
    crop_face,
    load_classifier,
)
from cfer.taxonomy import BASIC, COMPOUND

FRAME_SIZE = (640, 480)


def timings(call: Callable[[], Any], repeats: int, warmup: int = 10) -> list[float]:
    """Seconds of each of ``repeats`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def latency(seconds: list[float]) -> dict[str, float]:
    return {"median_ms": 1e3 * statistics.median(seconds), "p95_ms": 1e3 * float(np.percentile(seconds, 95))}


def checkpoint_of(model: str | None, folder: Path) -> Path:
    """``--model``, or the default architecture (random weights, 21 classes, 64 px) saved as a checkpoint."""
    if model is not None:
        return Path(model)
    network = create_model(ModelConfig(pretrained="none"), len(BASIC) + len(COMPOUND))
    return save_checkpoint(network, folder / "default.safetensors", {"classes": [*BASIC, *COMPOUND], "size": 64})


def runners(classifier: LoadedClassifier, folder: Path, threads: int) -> dict[str, Callable[[torch.Tensor], Any]]:
    """One callable per runtime mapping a normalised batch to the outputs: cfer's PyTorch runner, then the exports."""
    result: dict[str, Callable[[torch.Tensor], Any]] = {"pytorch": classifier.run}
    for runtime, format_name, suffix in (("torchscript", "torchscript", ".pt"), ("onnxruntime", "onnx", ".onnx")):
        path = folder / f"model_{classifier.spec.input_size}{suffix}"
        result[runtime] = load_exported(export_model(classifier.model, classifier.spec, path, format_name), threads).run
    return result


def classifier_table(classifier: LoadedClassifier, folder: Path, threads: int, repeats: int) -> dict[str, dict]:
    """Latency at batch 1 and throughput at batch 32 of each runtime at the spec's size."""
    size = classifier.spec.input_size
    table = {}
    for runtime, run in runners(classifier, folder, threads).items():
        one, batch = torch.randn(1, 3, size, size), torch.randn(32, 3, size, size)
        batch_seconds = timings(lambda run=run, batch=batch: run(batch), max(3, repeats // 20), warmup=2)
        table[runtime] = {**latency(timings(lambda run=run, one=one: run(one), repeats)),
                          "batch32_images_per_s": 32 / statistics.median(batch_seconds)}
    return table


def write_video(path: Path, frames: int, fps: float = 25.0) -> Path:
    """A 640 x 480 clip of the astronaut's face moving sideways and in depth, written with OpenCV."""
    astronaut = data.astronaut()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, FRAME_SIZE)
    for index in range(frames):
        phase = 2 * np.pi * index / frames
        side = int(400 + 60 * np.sin(phase))  # the face grows and shrinks
        picture = cv2.resize(astronaut, (side, side), interpolation=cv2.INTER_AREA)
        frame = np.full((FRAME_SIZE[1], FRAME_SIZE[0], 3), 90, np.uint8)
        left = int((FRAME_SIZE[0] - side) / 2 + 100 * np.sin(2 * phase))
        top = (FRAME_SIZE[1] - side) // 2
        x0, y0 = max(0, left), max(0, top)
        x1, y1 = min(FRAME_SIZE[0], left + side), min(FRAME_SIZE[1], top + side)
        frame[y0:y1, x0:x1] = picture[y0 - top:y1 - top, x0 - left:x1 - left]
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def stage_costs(video: Path, detector: MTCNN, predictor: Predictor, repeats: int) -> dict[str, float]:
    """Milliseconds of each stage of one frame."""
    start = time.perf_counter()
    with VideoReader(video) as reader:
        frames = [frame.pixels for frame in reader]
    costs = {"decode_ms": 1e3 * (time.perf_counter() - start) / len(frames)}
    frame = frames[0]
    for size in (640, 320):
        finder = FaceFinder(detector, size)
        calls = timings(lambda finder=finder: finder(frame), max(5, repeats // 10), warmup=2)
        costs[f"detect_{size}px_ms"] = latency(calls)["median_ms"]
    tracker = FaceTracker(FaceFinder(detector, 320), detect_every=10 ** 9)
    tracker(frame)  # the first frame is a detection; the next ones are followed
    costs["follow_ms"] = latency(timings(lambda: tracker(frame), repeats))["median_ms"]
    face = FaceFinder(detector, 320)(frame)[0]
    costs["crop_ms"] = latency(timings(lambda: crop_face(frame, face, predictor.spec), repeats))["median_ms"]
    crop = crop_face(frame, face, predictor.spec)[None]
    costs["classify_ms"] = latency(timings(lambda: predictor.classifier.run(predictor.normalise(crop)),
                                           repeats))["median_ms"]
    return costs


def end_to_end(video: Path, classifier: LoadedClassifier, detector: MTCNN, config: PredictorConfig) -> dict[str, float]:
    """Frames per second of the whole pipeline on the video, and the full detections it ran."""
    predictor = Predictor(classifier, config, detector)
    start = time.perf_counter()
    frames = faces = 0
    for frame in predictor.predict_video(video, progress=False):
        frames, faces = frames + 1, faces + len(frame.faces)
    seconds = time.perf_counter() - start
    return {"frames_per_s": frames / seconds, "frames": frames, "frames_with_a_face": faces / frames}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of PyTorch and ONNX Runtime")
    parser.add_argument("--model", help="a cfer checkpoint; default: the default architecture, random weights")
    parser.add_argument("--video", help="a video with one face; default: one written by this script")
    parser.add_argument("--frames", type=int, default=150, help="frames of the written video (25 fps)")
    parser.add_argument("--repeats", type=int, default=200, help="timed batch-1 calls per measurement")
    parser.add_argument("--out", help="JSON file for the results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"threads": args.threads, "cpu": platform.processor() or platform.machine(),
                               "cpus": os.cpu_count(), "load_average": os.getloadavg(), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        checkpoint = checkpoint_of(args.model, scratch)
        classifier = load_classifier(checkpoint, device="cpu")
        spec = classifier.spec
        results["model"] = {"checkpoint": args.model or "default architecture, random weights",
                            "backbone": spec.backbone, "classes": len(spec.class_names)}
        results["classifier"] = {
            f"{size}px": classifier_table(load_classifier(checkpoint, device="cpu", size=size), scratch, args.threads,
                                          args.repeats) for size in dict.fromkeys((spec.input_size, 224))}
        video = Path(args.video) if args.video else write_video(scratch / "one_face.mp4", args.frames)
        detector = MTCNN()
        onnx_path = export_model(classifier.model, spec, scratch / "pipeline.onnx", "onnx")
        backends = {"pytorch": classifier, "onnxruntime": load_classifier(onnx_path, threads=args.threads)}
        results["stages"] = {name: stage_costs(video, detector, Predictor(backend, detector=detector), args.repeats)
                             for name, backend in backends.items()}
        defaults = PredictorConfig()
        settings = {"every frame, 640 px": PredictorConfig(detect_every=1, video_detect_size=640),
                    "every frame, 320 px": PredictorConfig(detect_every=1, video_detect_size=320),
                    f"default: 320 px every {defaults.detect_every} frames, ONet between": defaults}
        results["end_to_end"] = {f"{name} ({backend})": end_to_end(video, backends[backend], detector, config)
                                 for name, config in settings.items() for backend in backends}
    report(results, spec.input_size)
    if args.out:
        write_json(args.out, results)


def report(results: dict[str, Any], size: int) -> None:
    print(f"threads {results['threads']}, load average {results['load_average']}")
    print("| model input | runtime | batch 1 median (ms) | batch 1 p95 (ms) | batch 32 (images/s) |")
    print("|---|---|---|---|---|")
    for resolution, table in results["classifier"].items():
        for runtime, row in table.items():
            print(f"| {resolution} | {runtime} | {row['median_ms']:.2f} | {row['p95_ms']:.2f} | "
                  f"{row['batch32_images_per_s']:.0f} |")
    print(f"\none frame's stages, classifier at {size} px (ms)")
    print("| stage | " + " | ".join(results["stages"]) + " |")
    print("|---" * (1 + len(results["stages"])) + "|")
    for stage in next(iter(results["stages"].values())):
        print(f"| {stage} | " + " | ".join(f"{costs[stage]:.2f}" for costs in results["stages"].values()) + " |")
    print("\n| end to end | frames/s |")
    print("|---|---|")
    for name, row in results["end_to_end"].items():
        print(f"| {name} | {row['frames_per_s']:.1f} |")


if __name__ == "__main__":
    main()
