"""MTCNN (Zhang, Zhang, Li & Qiao 2016): a face detector that also gives 5 landmarks, in plain PyTorch.

The weights are the original MTCNN ones (Kaipeng Zhang, MIT licence), as shipped inside the PyPI
package ``mtcnn`` (ipazc, MIT; ``mtcnn/assets/weights/{pnet,rnet,onet}.lz4``, joblib files of Keras
weight lists). ``import mtcnn`` would import TensorFlow, so the files are located through
``importlib.metadata`` and converted here into state dicts of the three networks below, whose keys
are those of facenet-pytorch's copy of the same weights. Nothing is downloaded.

Input: an (H, W, 3) RGB image, uint8 or float in 0..255 (a grayscale (H, W) one is repeated). Output
(:class:`Detection`): boxes (n, 4) ``x1, y1, x2, y2`` in pixels, probabilities (n,), and landmarks
(n, 5, 2) as ``(x, y)`` in the order left eye, right eye, nose, left mouth corner, right mouth corner
("left" is the smaller x in the image).
"""

from __future__ import annotations

import importlib.metadata
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import nms, roi_align

__all__ = ["MTCNN", "Detection", "load_mtcnn_weights", "square_boxes"]


@dataclass(frozen=True)
class Detection:
    """Faces found in one image, most probable first."""

    boxes: np.ndarray  # (n, 4) float32, x1, y1, x2, y2
    probabilities: np.ndarray  # (n,) float32
    landmarks: np.ndarray  # (n, 5, 2) float32: left eye, right eye, nose, left and right mouth corners

    def __len__(self) -> int:
        return len(self.boxes)


# --- networks --------------------------------------------------------------------------------------
class PNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, 3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, 3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / non-face logits
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box regression

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return self.conv4_2(x), F.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, 3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, 3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, 2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).contiguous().flatten(1)  # (N, W, H, C) order, as trained
        x = self.prelu4(self.dense4(x))
        return self.dense5_2(x), F.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, 2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).contiguous().flatten(1)
        x = self.prelu5(self.dense5(x))
        return self.dense6_2(x), self.dense6_3(x), F.softmax(self.dense6_1(x), dim=1)


# --- weights ---------------------------------------------------------------------------------------
# Order of the arrays in the Keras lists of ``mtcnn`` 1.0.0 -> torch state-dict keys.
_KERAS_ORDER = {
    "pnet": ["conv1", "prelu1", "conv2", "prelu2", "conv3", "prelu3", "conv4_2", "conv4_1"],
    "rnet": ["conv1", "prelu1", "conv2", "prelu2", "conv3", "prelu3", "dense4", "prelu4",
             "dense5_2", "dense5_1"],
    "onet": ["conv1", "prelu1", "conv2", "prelu2", "conv3", "prelu3", "conv4", "prelu4",
             "dense5", "prelu5", "dense6_2", "dense6_3", "dense6_1"],
}


def _keras_to_state_dict(name: str, arrays: list) -> dict:
    sd, it = {}, iter(arrays)
    for layer in _KERAS_ORDER[name]:
        w = np.asarray(next(it), dtype=np.float32)
        if layer.startswith("prelu"):
            sd[f"{layer}.weight"] = torch.from_numpy(w.reshape(-1).copy())
            continue
        if w.ndim == 4:  # HWIO -> OIHW
            w = w.transpose(3, 2, 0, 1)
        else:  # (in, out) -> (out, in)
            w = w.T
        sd[f"{layer}.weight"] = torch.from_numpy(np.ascontiguousarray(w))
        sd[f"{layer}.bias"] = torch.from_numpy(np.asarray(next(it), np.float32).copy())
    assert next(it, None) is None
    return sd


def load_mtcnn_weights() -> dict[str, dict[str, torch.Tensor]]:
    """The three networks' state dicts, from the weight files inside the installed ``mtcnn`` package.

    Returns:
        ``{"pnet": ..., "rnet": ..., "onet": ...}``.

    Raises:
        FileNotFoundError: If the ``mtcnn`` package (a cfer dependency) is not installed.
    """
    try:
        distribution = importlib.metadata.distribution("mtcnn")  # locating it does not import TensorFlow
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError("the face detector's weights ship in the PyPI package 'mtcnn', which is not "
                                "installed: pip install 'mtcnn>=1.0,<2' (it is a dependency of cfer)") from None
    import joblib  # a dependency of mtcnn

    states = {}
    for name in _KERAS_ORDER:
        path = Path(str(distribution.locate_file(f"mtcnn/assets/weights/{name}.lz4")))
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing from the installed 'mtcnn' package; reinstall it")
        # a joblib (pickle) file, trusted as the installed package's own code is
        states[name] = _keras_to_state_dict(name, joblib.load(path))
    return states


# --- box arithmetic --------------------------------------------------------------------------------
def _bbreg(boxes: torch.Tensor, reg: torch.Tensor, plus1: bool = True) -> torch.Tensor:
    w = boxes[:, 2] - boxes[:, 0] + (1 if plus1 else 0)
    h = boxes[:, 3] - boxes[:, 1] + (1 if plus1 else 0)
    return torch.stack([boxes[:, 0] + reg[:, 0] * w, boxes[:, 1] + reg[:, 1] * h,
                        boxes[:, 2] + reg[:, 2] * w, boxes[:, 3] + reg[:, 3] * h], dim=1)


def square_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Squares around the boxes' centres, side the longer one (MTCNN's ``rerec``), (n, 4)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    l = torch.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - l * 0.5
    y1 = boxes[:, 1] + h * 0.5 - l * 0.5
    return torch.stack([x1, y1, x1 + l, y1 + l], dim=1)


def _nms_min(boxes: torch.Tensor, scores: torch.Tensor, thr: float) -> torch.Tensor:
    """Greedy NMS with intersection / min(area) overlap (the original MTCNN last stage)."""
    order = scores.argsort(descending=True)
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    keep = []
    while order.numel():
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        xx1 = torch.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = torch.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = torch.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = torch.minimum(boxes[i, 3], boxes[rest, 3])
        inter = (xx2 - xx1 + 1).clamp(min=0) * (yy2 - yy1 + 1).clamp(min=0)
        ov = inter / torch.minimum(area[i], area[rest])
        order = rest[ov <= thr]
    return torch.tensor(keep, dtype=torch.long)


def _crops(img: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Resample square boxes (1-based inclusive MTCNN coords) to size x size, zero outside."""
    b = boxes.floor()
    rois = torch.cat([torch.zeros(len(b), 1), b[:, :1] - 1, b[:, 1:2] - 1, b[:, 2:3], b[:, 3:4]], 1)
    return roi_align(img, rois, (size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


# --- the detector ----------------------------------------------------------------------------------


class MTCNN(nn.Module):
    """The three-stage cascade: proposals over an image pyramid (PNet), refinement (RNet), output (ONet).

    Args:
        min_face_size: Smallest face side searched for, in pixels.
        thresholds: Face-probability thresholds of the three stages.
        factor: Scale step of the image pyramid.
    """

    def __init__(self, min_face_size: int = 20, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709) -> None:
        super().__init__()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        for name, state in load_mtcnn_weights().items():
            getattr(self, name).load_state_dict(state, strict=True)
        self.min_face_size, self.thresholds, self.factor = min_face_size, thresholds, factor
        self.eval()

    @torch.inference_mode()
    def detect(self, image: np.ndarray) -> Detection:
        """Finds the faces in one RGB image.

        Args:
            image: (H, W, 3) RGB or (H, W) gray, uint8 or float in 0..255.

        Returns:
            The faces, most probable first.
        """
        pixels = torch.from_numpy(np.array(image, dtype=np.float32))
        if pixels.ndim == 2:
            pixels = pixels[..., None].expand(-1, -1, 3)
        x = (pixels.permute(2, 0, 1)[None] - 127.5) * 0.0078125
        boxes = self._propose(x)
        if len(boxes):
            boxes = self._refine(x, boxes)
        if not len(boxes):
            return Detection(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
        boxes, scores, landmarks = self._output(x, boxes)
        order = np.argsort(-scores, kind="stable")
        return Detection(boxes[order], scores[order], landmarks[order])

    def _scales(self, height: int, width: int) -> list[float]:
        first = 12.0 / self.min_face_size
        side, scales = min(height, width) * first, []
        while side >= 12:
            scales.append(first * self.factor ** len(scales))
            side *= self.factor
        return scales

    def _propose(self, x: torch.Tensor) -> torch.Tensor:
        """Stage 1: PNet over the pyramid; square candidate boxes (n, 4)."""
        height, width = x.shape[-2:]
        candidates = []
        for scale in self._scales(height, width):
            size = (math.ceil(height * scale), math.ceil(width * scale))
            regression, probability = self.pnet(F.interpolate(x, size=size, mode="area"))
            face = probability[0, 1]
            ys, xs = torch.nonzero(face >= self.thresholds[0], as_tuple=True)
            if not len(ys):
                continue
            boxes = torch.stack([((2 * xs + 1) / scale).floor(), ((2 * ys + 1) / scale).floor(),
                                 ((2 * xs + 12) / scale).floor(), ((2 * ys + 12) / scale).floor()], 1).float()
            score = face[ys, xs]
            keep = nms(boxes, score, 0.5)
            candidates.append(torch.cat([boxes[keep], score[keep, None], regression[0, :, ys, xs].T[keep]], 1))
        if not candidates:
            return torch.zeros((0, 4))
        found = torch.cat(candidates)
        found = found[nms(found[:, :4], found[:, 4], 0.7)]
        return square_boxes(_bbreg(found[:, :4], found[:, 5:9], plus1=False))

    def _refine(self, x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Stage 2: RNet on 24 x 24 crops."""
        regression, probability = self.rnet(_crops(x, boxes, 24))
        keep = probability[:, 1] > self.thresholds[1]
        boxes, score, regression = boxes[keep], probability[keep, 1], regression[keep]
        if not len(boxes):
            return boxes
        kept = nms(boxes, score, 0.7)
        return square_boxes(_bbreg(boxes[kept], regression[kept]))

    @torch.inference_mode()
    def refit(self, crops: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The last stage (ONet) on given boxes, with no threshold and no suppression: what following a face needs.

        Args:
            crops: ONet's inputs, (n, 3, 48, 48), normalised as :meth:`detect` normalises the image.
            boxes: The square boxes they were cropped from (1-based inclusive MTCNN coordinates), (n, 4).

        Returns:
            ``(boxes (n, 4), face probabilities (n,), landmarks (n, 5, 2))``, the boxes re-fitted.
        """
        regression, points, probability = self.onet(crops)
        width = boxes[:, 2] - boxes[:, 0] + 1
        height = boxes[:, 3] - boxes[:, 1] + 1
        landmarks = torch.stack([width[:, None] * points[:, 0:5] + boxes[:, 0:1] - 1,
                                 height[:, None] * points[:, 5:10] + boxes[:, 1:2] - 1], dim=2)
        return _bbreg(boxes, regression), probability[:, 1], landmarks

    def _output(self, x: torch.Tensor, boxes: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stage 3: ONet on 48 x 48 crops; final boxes, probabilities and landmarks (may be empty)."""
        boxes, score, landmarks = self.refit(_crops(x, boxes, 48), boxes)
        keep = score > self.thresholds[2]
        boxes, score, landmarks = boxes[keep], score[keep], landmarks[keep]
        kept = _nms_min(boxes, score, 0.7) if len(boxes) else torch.zeros(0, dtype=torch.long)
        return (boxes[kept].numpy().astype(np.float32), score[kept].numpy().astype(np.float32),
                landmarks[kept].numpy().astype(np.float32))
