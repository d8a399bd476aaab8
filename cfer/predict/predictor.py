"""``cfer.Predictor``: a trained model applied to photos, face crops and videos, one result per face.

::

    import cfer
    predictor = cfer.Predictor.load("runs/incremental")        # a run directory or any model file
    for face in predictor("photo.jpg"):                        # a path, a PIL image or an RGB array
        print(face.box, face.label, face.top_k, face.components, face.valence, face.arousal)

Each face is found and aligned with MTCNN (``detect=False`` takes the image as one cropped face),
cropped as the model's training faces were (:func:`cfer.predict.faces.crop_face`), and classified in
one batch per image; the probabilities are the softmax of the logits over every class the model
knows. A compound prediction carries its two basic components (:mod:`cfer.taxonomy`); a multi-task
model's valence and arousal come with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from cfer.data.faces import MTCNN
from cfer.models.export import ModelSpec
from cfer.predict.faces import Face, FaceFinder, FaceTracker, crop_face, whole_image_face
from cfer.predict.loading import LoadedClassifier, load_classifier
from cfer.predict.readers import ImageInput, VideoFrame, VideoReader, as_rgb
from cfer.taxonomy import CATEGORY_NAMES, get_category

__all__ = ["FacePrediction", "FramePrediction", "Predictor", "PredictorConfig"]


@dataclass(frozen=True)
class PredictorConfig:
    """How a :class:`Predictor` finds faces and reports classes."""

    detect: bool = True  # find and align the faces; False: each image is one already cropped face
    top_k: int = 3  # most probable classes listed per face
    detect_size: int = 640  # photos are searched for faces at most this large (longer side, pixels)
    video_detect_size: int = 320  # video frames are searched at most this large
    detect_every: int = 5  # video: a full detection every N frames, faces followed by MTCNN's ONet between
    min_face_size: int = 20  # smallest face searched for, in pixels of the searched image
    max_faces: int | None = None  # keep only the N most probable faces of an image; None: all
    batch_size: int = 64  # faces per classifier pass
    device: str = "auto"  # auto (CUDA with float16 autocast when present), cpu or cuda

    def __post_init__(self) -> None:
        for name in ("top_k", "detect_size", "video_detect_size", "detect_every", "min_face_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_faces is not None and self.max_faces < 1:
            raise ValueError(f"max_faces must be at least 1 or None, got {self.max_faces}")


@dataclass(frozen=True)
class FacePrediction:
    """What the model says about one face.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in the image's pixels.
        label: The most probable class.
        probabilities: Softmax probability of every class the model knows, in output order.
        top_k: The ``top_k`` most probable ``(class, probability)`` pairs, most probable first.
        components: The basic components of a compound ``label`` (:mod:`cfer.taxonomy`); ``()`` otherwise.
        valence: In [-1, 1], from a model with a regression head; else None.
        arousal: Likewise.
        detection_score: MTCNN's face probability; None for a face given as the whole image.
        landmarks: ``((x, y), ...)`` of the 5 landmarks the crop was aligned on; None without detection.
        track: Id of the face across the frames of a video; None for photos.
        crop: ``(S, S, 3)`` uint8 RGB crop the model saw.
    """

    box: tuple[float, float, float, float]
    label: str
    probabilities: dict[str, float]
    top_k: tuple[tuple[str, float], ...]
    components: tuple[str, ...]
    valence: float | None
    arousal: float | None
    detection_score: float | None
    landmarks: tuple[tuple[float, float], ...] | None
    track: int | None = None
    crop: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def probability(self) -> float:
        """Probability of :attr:`label`."""
        return self.probabilities[self.label]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (all but the crop)."""
        fields = {item.name: getattr(self, item.name) for item in dataclasses.fields(self) if item.name != "crop"}
        fields["top_k"] = [{"class": name, "probability": probability} for name, probability in self.top_k]
        fields["box"], fields["components"] = list(self.box), list(self.components)
        fields["landmarks"] = None if self.landmarks is None else [list(point) for point in self.landmarks]
        return fields


@dataclass(frozen=True)
class FramePrediction:
    """The faces of one video frame."""

    index: int  # 0-based frame number in the file
    time: float | None  # seconds from the start; None when the video declares no frame rate
    faces: list[FacePrediction]
    pixels: np.ndarray = field(repr=False, compare=False)  # (H, W, 3) uint8 RGB frame


class Predictor:
    """Finds, aligns and classifies the faces of photos and videos with a trained cfer model.

    Args:
        classifier: From :func:`cfer.predict.load_classifier`.
        config: Face finding and reporting settings.
        detector: A loaded MTCNN to share; by default one is built when first needed.
    """

    def __init__(self, classifier: LoadedClassifier, config: PredictorConfig = PredictorConfig(),
                 detector: MTCNN | None = None) -> None:
        self.classifier, self.config = classifier, config
        self._detector = detector
        self._components = tuple(get_category(name).components if name in CATEGORY_NAMES else ()
                                 for name in classifier.spec.class_names)

    @classmethod
    def load(cls, model: str | Path, size: int | None = None, **settings: Any) -> Predictor:
        """A predictor of a run directory, checkpoint or exported file.

        Args:
            model: See :func:`cfer.predict.load_classifier`.
            size: Face-crop side overriding the one the model was trained at.
            **settings: Fields of :class:`PredictorConfig`, e.g. ``detect=False``, ``top_k=5``.

        Raises:
            FileNotFoundError: If there is no model at ``model``.
            ValueError: If it is not a cfer model, or a setting is out of range.
            TypeError: If a setting is not a field of :class:`PredictorConfig`.
        """
        config = PredictorConfig(**settings)
        return cls(load_classifier(model, config.device, size), config)

    @property
    def spec(self) -> ModelSpec:
        """The model's classes, outputs and input contract."""
        return self.classifier.spec

    @property
    def class_names(self) -> tuple[str, ...]:
        """Every class the model knows, in output order."""
        return self.classifier.spec.class_names

    @property
    def detector(self) -> MTCNN:
        """The face detector, built on first use."""
        if self._detector is None:
            self._detector = MTCNN(min_face_size=self.config.min_face_size)
        return self._detector

    def __call__(self, image: ImageInput, detect: bool | None = None) -> list[FacePrediction]:
        """The faces of one image, most probable face first.

        Args:
            image: A path, a PIL image or an RGB array (see :func:`cfer.predict.readers.as_rgb`).
            detect: Overrides ``config.detect`` for this call.

        Returns:
            One prediction per face; empty when no face is found.

        Raises:
            BadImageError: If a file cannot be decoded.
            FileNotFoundError: If a path does not exist.
        """
        pixels = as_rgb(image)
        detect = self.config.detect if detect is None else detect
        faces = FaceFinder(self.detector, self.config.detect_size)(pixels) if detect else [whole_image_face(pixels)]
        return self.classify(pixels, faces[:self.config.max_faces])

    def predict_video(self, video: str | Path | VideoReader | Iterable[np.ndarray], stride: int = 1,
                      progress: bool = True) -> Iterator[FramePrediction]:
        """The faces of every ``stride``-th frame of a video, followed from frame to frame.

        Args:
            video: A video file (read with OpenCV), an open :class:`~cfer.predict.readers.VideoReader`
                (which applies its own stride), or RGB frames in order.
            stride: Predict every this many frames (the tracker sees only those).
            progress: A progress bar over the frames.

        Yields:
            One :class:`FramePrediction` per predicted frame; faces carry a track id.

        Raises:
            BadVideoError: If the file cannot be opened or holds no decodable frame.
        """
        if isinstance(video, (str, Path)):
            with VideoReader(video, stride) as reader:
                yield from self.predict_video(reader, progress=progress)
            return
        tracker = None
        if self.config.detect:
            tracker = FaceTracker(FaceFinder(self.detector, self.config.video_detect_size), self.config.detect_every)
        if isinstance(video, VideoReader):
            total = -(-video.declared_frames // video.stride) if video.declared_frames else None
            frames = tqdm(video, total=total, desc=video.path.name, unit="frame", disable=not progress,
                          dynamic_ncols=True, leave=False)
        else:
            numbered = (VideoFrame(index, None, as_rgb(pixels)) for index, pixels in enumerate(video)
                        if index % stride == 0)
            frames = tqdm(numbered, desc="video", unit="frame", disable=not progress, dynamic_ncols=True, leave=False)
        yield from self._track(frames, tracker)

    def _track(self, frames: Iterable[VideoFrame], tracker: FaceTracker | None) -> Iterator[FramePrediction]:
        for frame in frames:
            faces = tracker(frame.pixels) if tracker is not None else [whole_image_face(frame.pixels)]
            yield FramePrediction(frame.index, frame.time, self.classify(frame.pixels, faces[:self.config.max_faces]),
                                  frame.pixels)

    def classify(self, image: np.ndarray, faces: Sequence[Face]) -> list[FacePrediction]:
        """Crops and classifies given faces of an image.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            faces: Where the faces are (from a detector, or :func:`~cfer.predict.faces.whole_image_face`).

        Returns:
            One prediction per face, in the order given.
        """
        if not faces:
            return []
        crops = np.stack([crop_face(image, face, self.spec) for face in faces])
        logits, regression = [], []
        for start in range(0, len(crops), self.config.batch_size):
            batch = self.normalise(crops[start:start + self.config.batch_size])
            batch_logits, batch_regression = self.classifier.run(batch)
            logits.append(batch_logits)
            regression.append(batch_regression)
        probabilities = torch.cat(logits).float().softmax(dim=1).numpy()
        affect = torch.cat(regression).numpy() if regression[0] is not None else None
        return [self._prediction(face, probabilities[index], None if affect is None else affect[index], crops[index])
                for index, face in enumerate(faces)]

    def normalise(self, crops: np.ndarray) -> torch.Tensor:
        """``(B, S, S, 3)`` uint8 RGB crops as the model's ``(B, 3, S, S)`` float32 input."""
        return self.spec.normalise(torch.from_numpy(np.require(crops, requirements=["C", "W"])).permute(0, 3, 1, 2))

    def _prediction(self, face: Face, probabilities: np.ndarray, affect: np.ndarray | None,
                    crop: np.ndarray) -> FacePrediction:
        order = np.argsort(-probabilities, kind="stable")
        names = self.class_names
        valence = arousal = None
        if affect is not None and self.spec.regression_outputs[:2] == ("valence", "arousal"):
            valence, arousal = float(affect[0]), float(affect[1])
        landmarks = None if face.landmarks is None else tuple((float(x), float(y)) for x, y in face.landmarks)
        return FacePrediction(
            box=tuple(float(value) for value in face.box),
            label=names[order[0]],
            probabilities={name: float(value) for name, value in zip(names, probabilities)},
            top_k=tuple((names[index], float(probabilities[index])) for index in order[:self.config.top_k]),
            components=self._components[order[0]],
            valence=valence,
            arousal=arousal,
            detection_score=face.score,
            landmarks=landmarks,
            track=face.track,
            crop=crop,
        )
