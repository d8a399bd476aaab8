"""``cfer predict --model RUN_OR_FILE INPUT...``: predictions for photos, folders and videos, written to a folder.

For every image (folders are searched recursively) and every video frame (OpenCV), each face is
found, aligned and classified by a :class:`~cfer.predict.Predictor`. ``OUT`` receives

* ``predictions.csv`` and ``predictions.json``: one row per face, or per face and frame
  (:mod:`cfer.predict.writers`);
* ``skipped.csv`` (``path,reason``): every input that gave no prediction, a bad file (a corrupt
  image, an unreadable video, a missing path, an unknown file type), an image where no face was found;
* ``cam/<input>[_frame<k>]_face<i>.png`` with ``cam=METHOD``: a class activation map per face;
* with ``annotate=FILE.mp4`` and one video input, that video with boxes and labels drawn.

A bad file is recorded and the run goes on (``on_bad_file="error"`` stops at the first one), as for
every reader of real data; a run in which no input could be read is an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from cfer.data.images import DEFAULT_MAX_PIXELS, BadImageError, display_path
from cfer.data.reading import OnBadFile, SkipLog, write_skipped
from cfer.predict.annotate import FOURCC_BY_SUFFIX, AnnotatedVideo
from cfer.predict.loading import load_classifier
from cfer.predict.overlays import FaceCams
from cfer.predict.predictor import Predictor, PredictorConfig
from cfer.predict.readers import BadVideoError, MediaFile, VideoReader, as_rgb, collect_inputs
from cfer.predict.writers import FaceRecord, format_table, write_predictions

logger = logging.getLogger(__name__)

__all__ = ["InputSummary", "PredictConfig", "PredictSummary", "format_predict_summary", "run_predict"]


@dataclass(frozen=True)
class PredictConfig:
    """Settings of ``cfer predict``."""

    predictor: PredictorConfig = field(default_factory=PredictorConfig)  # face finding and classes reported
    size: int | None = None  # face-crop side in pixels; None: the one the model was trained at
    cam: str | None = None  # CAM method (cfer.cam.CAM_METHODS) for an overlay per face, e.g. gradcam; None: none
    annotate: str | None = None  # video file to write with boxes and labels (needs exactly one video input)
    video_stride: int = 1  # predict every N-th frame of a video
    on_bad_file: OnBadFile = "skip"  # a bad input: recorded in skipped.csv, or "error" to stop
    max_image_pixels: int = DEFAULT_MAX_PIXELS  # larger images are refused
    progress: bool = True  # progress bars over the inputs and each video's frames
    # CPU threads of PyTorch and ONNX Runtime; None: PyTorch's default (one per core). On a CPU that other
    # jobs share, fewer threads than cores can be many times faster (threads wait for each other)
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.video_stride < 1:
            raise ValueError(f"video_stride must be at least 1, got {self.video_stride}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1 or None, got {self.threads}")
        if self.annotate is not None and Path(self.annotate).suffix.lower() not in FOURCC_BY_SUFFIX:
            raise ValueError(f"annotate {self.annotate!r}: unsupported video suffix; use one of "
                             f"{sorted(FOURCC_BY_SUFFIX)}")


@dataclass(frozen=True)
class InputSummary:
    """What one input file gave."""

    path: str  # the file, as printable text
    kind: str  # image or video
    status: str  # ok, no face, or bad file
    frames: int  # images or video frames predicted
    faces: int  # faces predicted, over all its frames
    annotated: str | None = None  # the annotated video written from it


@dataclass(frozen=True)
class PredictSummary:
    """What a ``cfer predict`` run did."""

    model: str  # the model file used
    records: list[FaceRecord]  # every output row
    inputs: list[InputSummary]  # per input file
    skipped: list[tuple[str, str]]  # (path, reason) of the inputs that gave nothing
    files: dict[str, str]  # output name -> path written
    seconds: float  # wall time of the predictions (model loading excluded)
    frames: int  # images and video frames predicted


def run_predict(model: str | Path, inputs: Sequence[str | Path], out_dir: str | Path,
                config: PredictConfig = PredictConfig()) -> PredictSummary:
    """Predicts every face of ``inputs`` with ``model`` and writes the results to ``out_dir``.

    Args:
        model: A run directory, checkpoint or exported file (:func:`cfer.predict.load_classifier`).
        inputs: Image files, video files and folders of them.
        out_dir: Output folder (see the module docstring).
        config: The settings.

    Returns:
        The summary, with every row.

    Raises:
        FileNotFoundError: If there is no model, or no input could be read.
        ValueError: If ``annotate`` is set without exactly one video input, or under
            ``on_bad_file="error"`` at the first bad input.
    """
    out_dir = Path(out_dir)
    skips = SkipLog(config.on_bad_file)
    files = collect_inputs(inputs, skips)
    unusable = len(skips.items)
    videos = [file for file in files if file.kind == "video"]
    if config.annotate is not None and len(videos) != 1:
        raise ValueError(f"annotate writes one video, but {len(videos)} video input(s) were given; pass one video")
    with _torch_threads(config.threads):
        classifier = load_classifier(model, config.predictor.device, config.size, config.threads)
        return _predict_all(Predictor(classifier, config.predictor), files, out_dir, config, skips, unusable)


def _predict_all(predictor: Predictor, files: list[MediaFile], out_dir: Path, config: PredictConfig, skips: SkipLog,
                 unusable: int) -> PredictSummary:
    """Predicts every file and writes the outputs (see :func:`run_predict`)."""
    records: list[FaceRecord] = []
    summaries: list[InputSummary] = []
    stems: set[str] = set()  # of the CAM overlays' names: two inputs named alike must not overwrite each other
    start = time.perf_counter()
    with ExitStack() as stack:
        cams = stack.enter_context(FaceCams(predictor.classifier, config.cam, out_dir / "cam")) if config.cam else None
        for file in tqdm(files, desc="predict", unit="file", disable=not config.progress or len(files) < 2,
                         dynamic_ncols=True):
            reader = _predict_video if file.kind == "video" else _predict_image
            summaries.append(reader(predictor, file, config, records, skips, cams, _unique_stem(file.path, stems)))
    seconds = time.perf_counter() - start
    if all(item.status == "bad file" for item in summaries):
        reasons = "; ".join(f"{path}: {reason}" for path, reason in skips.items[:5]) or "no input given"
        write_skipped(skips.items, out_dir)
        raise FileNotFoundError(f"no input could be read: {reasons}")
    skips.warn("the inputs", len(files) + unusable)
    written = _write(predictor, records, summaries, skips, out_dir)
    written.update(("annotated", item.annotated) for item in summaries if item.annotated)
    return PredictSummary(display_path(predictor.classifier.source), records, summaries, list(skips.items), written,
                          seconds, sum(item.frames for item in summaries))


@contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """PyTorch's intra-op threads set to ``count`` for the block (unchanged for None)."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, count = path.stem, 1
    while stem in used:
        count += 1
        stem = f"{path.stem}_{count}"
    used.add(stem)
    return stem


def _predict_image(predictor: Predictor, file: MediaFile, config: PredictConfig, records: list[FaceRecord],
                   skips: SkipLog, cams: FaceCams | None, stem: str) -> InputSummary:
    source = display_path(file.path)
    try:
        pixels = as_rgb(file.path, config.max_image_pixels)
    except BadImageError as error:
        skips.add(file.path, error.reason)
        return InputSummary(source, "image", "bad file", 0, 0)
    faces = predictor(pixels)
    if not faces:
        skips.note(file.path, "no face found (if the image is an already cropped face, predict with detect=false)")
    overlays = cams.write(faces, stem) if cams is not None else []
    for index, face in enumerate(faces):
        records.append(FaceRecord(source, None, None, index, face, _cam_path(overlays, index)))
    return InputSummary(source, "image", "ok" if faces else "no face", 1, len(faces))


def _predict_video(predictor: Predictor, file: MediaFile, config: PredictConfig, records: list[FaceRecord],
                   skips: SkipLog, cams: FaceCams | None, stem: str) -> InputSummary:
    source = display_path(file.path)
    frames = faces = 0
    try:
        with VideoReader(file.path, config.video_stride) as reader, ExitStack() as stack:
            annotated = None
            for frame in predictor.predict_video(reader, progress=config.progress):
                if config.annotate is not None and annotated is None:
                    fps = reader.fps / config.video_stride if reader.fps else 0.0
                    size = (frame.pixels.shape[1], frame.pixels.shape[0])
                    annotated = stack.enter_context(AnnotatedVideo(config.annotate, fps, size))
                if annotated is not None:
                    annotated.write(frame.pixels, frame.faces)
                overlays = cams.write(frame.faces, f"{stem}_frame{frame.index}") if cams is not None else []
                records.extend(FaceRecord(source, frame.index, frame.time, index, face, _cam_path(overlays, index))
                               for index, face in enumerate(frame.faces))
                frames, faces = frames + 1, faces + len(frame.faces)
            if reader.truncated:
                skips.note(file.path, f"video ended after {reader.frames_read} of the {reader.declared_frames} "
                           "frames it declares (damaged or cut file); the frames read were predicted")
    except BadVideoError as error:
        skips.add(file.path, error.reason)
        return InputSummary(source, "video", "bad file", frames, faces)
    if not faces:
        skips.note(file.path, f"no face found in {frames} frame(s)")
    written = display_path(config.annotate) if config.annotate is not None and frames else None
    return InputSummary(source, "video", "ok" if faces else "no face", frames, faces, written)


def _cam_path(overlays: Sequence[Path], index: int) -> str | None:
    return display_path(overlays[index]) if index < len(overlays) else None


def _write(predictor: Predictor, records: list[FaceRecord], summaries: list[InputSummary], skips: SkipLog,
           out_dir: Path) -> dict[str, str]:
    header = {"model": {"source": display_path(predictor.classifier.source), "spec": asdict(predictor.spec)},
              "predictor": asdict(predictor.config), "inputs": [asdict(item) for item in summaries],
              "skipped": [{"path": path, "reason": reason} for path, reason in skips.items]}
    csv_path, json_path = write_predictions(records, predictor.class_names, out_dir, header)
    written = {"csv": display_path(csv_path), "json": display_path(json_path)}
    skipped = write_skipped(skips.items, out_dir)
    if skipped is not None:
        written["skipped"] = display_path(skipped)
    logger.info("predicted %d face(s) with %s; results in %s", len(records), display_path(predictor.classifier.source),
                display_path(out_dir))
    return written


def format_predict_summary(summary: PredictSummary, max_rows: int = 20) -> str:
    """The table of predictions and where the files are, for the command line."""
    faces = len(summary.records)
    rate = f", {summary.frames / summary.seconds:.1f} images or frames/s" if summary.seconds > 0 else ""
    totals = (f"{faces} face(s) in {summary.frames} image(s) or frame(s) of {len(summary.inputs)} input(s), "
              f"{summary.seconds:.1f} s{rate}; model {summary.model}")
    lines = [format_table(summary.records, max_rows), "", totals]
    if summary.skipped:
        lines.append(f"{len(summary.skipped)} input(s) gave no prediction; see {summary.files.get('skipped')}")
    lines += [f"{name}: {path}" for name, path in summary.files.items() if name != "skipped"]
    return "\n".join(lines)
