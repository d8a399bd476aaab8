"""Face alignment: a similarity transform that puts the 5 landmarks where a reference face has them.

The reference is the 5-point template of ArcFace (Deng et al. 2019; insightface's
``arcface_dst``, 112 x 112 pixels): eyes level at y = 51.6, nose at 71.7, mouth corners at 92.3.
The transform (rotation, uniform scale, translation) is fitted to the 5 points by least squares
(``cv2.estimateAffinePartial2D``), so the eye line comes out level; ``margin`` shrinks the face in
the crop to keep more of the head around it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["REFERENCE_LANDMARKS", "align_face", "eye_angle"]

REFERENCE_LANDMARKS = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
"""ArcFace's 5-point template in a 112 x 112 crop: left eye, right eye, nose, left and right mouth corners."""


def eye_angle(landmarks: np.ndarray) -> float:
    """Angle of the line from the left to the right eye, in degrees (0: level; positive: clockwise on screen).

    Args:
        landmarks: (5, 2) or (2, 2) ``(x, y)`` points, the two eyes first.
    """
    (left_x, left_y), (right_x, right_y) = np.asarray(landmarks, dtype=np.float64)[:2]
    return math.degrees(math.atan2(right_y - left_y, right_x - left_x))


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112, margin: float = 0.25) -> np.ndarray:
    """Warps ``image`` so that its face's landmarks land on the reference template.

    Args:
        image: (H, W, 3) uint8 RGB.
        landmarks: (5, 2) ``(x, y)`` of left eye, right eye, nose, left and right mouth corners.
        size: Side of the square output.
        margin: Extra room around the template face, as a fraction of its crop (0: ArcFace's tight crop).

    Returns:
        (size, size, 3) uint8; borders beyond the photo repeat its edge pixels.

    Raises:
        ValueError: If the landmarks are not (5, 2) or are degenerate (both eyes at one point).
    """
    points = np.asarray(landmarks, dtype=np.float32)
    if points.shape != (5, 2):
        raise ValueError(f"landmarks must have shape (5, 2), got {points.shape}")
    target = ((REFERENCE_LANDMARKS - 56.0) / (1.0 + margin) + 56.0) * (size / 112.0)
    matrix, _ = cv2.estimateAffinePartial2D(points, target, method=cv2.LMEDS)
    if matrix is None or np.linalg.norm(points[1] - points[0]) < 1e-3:
        raise ValueError(f"cannot align on degenerate landmarks {points.tolist()}")
    return cv2.warpAffine(np.ascontiguousarray(image), matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
