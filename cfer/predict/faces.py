"""Faces to classify: found in photos, followed through videos, and cropped as the model was trained.

* :class:`FaceFinder` runs MTCNN (:class:`cfer.data.faces.MTCNN`) on a copy of the image at most
  ``detect_size`` pixels long (most of MTCNN's time goes into its image pyramid, which shrinks with
  the square of that side) and maps the boxes and landmarks back to the full image.
* :class:`FaceTracker` is for video, the way real-time face trackers work: a full detection every
  ``detect_every`` frames; in between, MTCNN's last stage (ONet, one 48 x 48 crop per face) re-fits
  each face's box and 5 landmarks around where it was in the previous frame, and a face ONet no
  longer recognises triggers a full detection at once. A face that enters the picture is found at
  the next full detection. Faces keep a track id across frames.
* :func:`crop_face` cuts the face out as ``cfer preprocess`` and the data readers cut training faces
  (see :class:`cfer.models.export.ModelSpec`), so a model sees the crops it learned from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image
from torchvision.ops import box_iou, roi_align

from cfer.data.faces import MTCNN, align_face, square_boxes
from cfer.models.export import ModelSpec

__all__ = ["Face", "FaceFinder", "FaceTracker", "crop_face", "whole_image_face"]

_ONET_SIDE = 48
_SAME_FACE_IOU = 0.3  # a detection overlapping a track this much continues it
_DUPLICATE_IOU = 0.5  # two tracks overlapping this much follow one face


@dataclass(frozen=True)
class Face:
    """One face in an image."""

    box: np.ndarray  # (4,) float32 x1, y1, x2, y2 in the image's pixels
    landmarks: np.ndarray | None  # (5, 2) float32 (x, y): left eye, right eye, nose, left and right mouth corner
    score: float | None  # the detector's face probability; None for a face given as the whole image
    track: int | None = None  # id of the face across video frames


def whole_image_face(image: np.ndarray) -> Face:
    """The whole image as one face (an already cropped face: ``detect=False``)."""
    height, width = image.shape[:2]
    return Face(np.array([0, 0, width, height], dtype=np.float32), None, None)


class FaceFinder:
    """MTCNN on a reduced copy of each image.

    Args:
        detector: A loaded MTCNN; by default one is built (its weights ship in the ``mtcnn`` package).
        detect_size: Images are searched at most this many pixels long (longer side); faces smaller
            than ``detector.min_face_size`` pixels at that size are not found.
    """

    def __init__(self, detector: MTCNN | None = None, detect_size: int = 640) -> None:
        if detect_size < 12:
            raise ValueError(f"detect_size must be at least 12 pixels, got {detect_size}")
        self.detector = detector if detector is not None else MTCNN()
        self.detect_size = detect_size

    def __call__(self, image: np.ndarray) -> list[Face]:
        """The faces of an ``(H, W, 3)`` uint8 RGB image, most probable first."""
        scale = min(1.0, self.detect_size / max(image.shape[:2]))
        searched = image
        if scale < 1.0:
            size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
            searched = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        found = self.detector.detect(searched)
        return [Face(box / scale, landmarks / scale, float(score))
                for box, landmarks, score in zip(found.boxes, found.landmarks, found.probabilities)]


class FaceTracker:
    """Follows the faces of consecutive video frames; call it once per frame, in order.

    Args:
        finder: The full detector.
        detect_every: Run a full detection every this many frames (1: every frame, no tracking).
    """

    def __init__(self, finder: FaceFinder, detect_every: int = 5) -> None:
        if detect_every < 1:
            raise ValueError(f"detect_every must be at least 1, got {detect_every}")
        self.finder, self.detect_every = finder, detect_every
        self.detections = 0  # full detections run, for reports
        self._faces: list[Face] = []
        self._frames = 0
        self._next_track = 0

    def __call__(self, frame: np.ndarray) -> list[Face]:
        """The faces of the next ``(H, W, 3)`` uint8 RGB frame, with track ids."""
        due = self._frames % self.detect_every == 0
        self._frames += 1
        if not due:
            if not self._faces:  # nobody to follow: wait for the next full detection
                return []
            followed = self._follow(frame)
            if len(followed) == len(self._faces):
                self._faces = followed
                return followed
        self.detections += 1
        self._faces = self._continue_tracks(self.finder(frame))
        return self._faces

    def _follow(self, frame: np.ndarray) -> list[Face]:
        """ONet on each face's previous box: the faces still there, re-fitted (MTCNN's third stage)."""
        detector = self.finder.detector
        boxes = square_boxes(torch.from_numpy(np.stack([face.box for face in self._faces])))
        crops = torch.cat([_onet_crop(frame, box) for box in boxes])
        fitted, probability, landmarks = detector.refit(crops, boxes)
        kept = []
        for index, face in enumerate(self._faces):
            if float(probability[index]) > detector.thresholds[2]:
                kept.append(Face(fitted[index].numpy().astype(np.float32), landmarks[index].numpy().astype(np.float32),
                                 float(probability[index]), face.track))
        return _without_duplicates(kept)

    def _continue_tracks(self, found: Sequence[Face]) -> list[Face]:
        """Gives each detection the id of the previous face it overlaps most, or a new id."""
        if not found:
            return []
        ids: list[int | None] = [None] * len(found)
        if self._faces:
            overlap = box_iou(torch.from_numpy(np.stack([face.box for face in found])),
                              torch.from_numpy(np.stack([face.box for face in self._faces])))
            while overlap.numel() and float(overlap.max()) > _SAME_FACE_IOU:
                new, old = divmod(int(overlap.argmax()), overlap.shape[1])
                ids[new] = self._faces[old].track
                overlap[new, :], overlap[:, old] = -1, -1
        faces = []
        for face, track in zip(found, ids):
            if track is None:
                track, self._next_track = self._next_track, self._next_track + 1
            faces.append(replace(face, track=track))
        return faces


def crop_face(image: np.ndarray, face: Face, spec: ModelSpec) -> np.ndarray:
    """The face as the model's input crop.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        face: A detected face (aligned on its landmarks), or one without landmarks (its box's
            centered square is taken, as the data readers square an image).
        spec: The model's input contract.

    Returns:
        ``(S, S, 3)`` uint8 RGB, ``S = spec.input_size``.
    """
    size = spec.input_size
    if face.landmarks is not None:
        aligned = align_face(image, face.landmarks, max(spec.align_size, size), spec.face_margin)
    else:
        x1, y1, x2, y2 = (round(value) for value in face.box)
        aligned = _center_square(image[max(0, y1):y2, max(0, x1):x2])
    if aligned.shape[0] == size:
        return np.ascontiguousarray(aligned)
    return np.array(Image.fromarray(aligned).resize((size, size), Image.Resampling.BILINEAR))


def _center_square(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top:top + side, left:left + side]


def _onet_crop(frame: np.ndarray, box: torch.Tensor) -> torch.Tensor:
    """ONet's (1, 3, 48, 48) input for one square box, cropped as MTCNN's own stages crop (zero outside the frame).

    Only the pixels around the box are converted to float, not the whole frame.
    """
    corners = box.floor()  # MTCNN's 1-based inclusive pixel boxes
    height, width = frame.shape[:2]
    left, top = max(0, int(corners[0]) - 3), max(0, int(corners[1]) - 3)
    right, bottom = min(width, int(corners[2]) + 3), min(height, int(corners[3]) + 3)
    if right <= left or bottom <= top:  # the box left the frame: nothing to see
        return torch.zeros(1, 3, _ONET_SIDE, _ONET_SIDE)
    region = torch.from_numpy(np.ascontiguousarray(frame[top:bottom, left:right])).permute(2, 0, 1)[None]
    roi = torch.tensor([[0.0, corners[0] - 1 - left, corners[1] - 1 - top, corners[2] - left, corners[3] - top]])
    return roi_align((region.float() - 127.5) * 0.0078125, roi, (_ONET_SIDE, _ONET_SIDE), spatial_scale=1.0,
                     sampling_ratio=-1, aligned=True)


def _without_duplicates(faces: list[Face]) -> list[Face]:
    """Drops the less probable of two followed faces that have converged on one face."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda item: -(item.score or 0.0)):
        boxes = torch.from_numpy(np.stack([face.box] + [other.box for other in kept]))
        if not kept or float(box_iou(boxes[:1], boxes[1:]).max()) <= _DUPLICATE_IOU:
            kept.append(face)
    return kept
