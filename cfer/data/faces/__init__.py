"""Faces in photos: MTCNN detection with 5 landmarks, eye-line alignment, and ``cfer preprocess``."""

from cfer.data.faces.align import align_face, eye_angle
from cfer.data.faces.mtcnn import MTCNN, Detection, load_mtcnn_weights, square_boxes
from cfer.data.faces.preprocess import PreprocessConfig, preprocess_images

__all__ = ["MTCNN", "Detection", "PreprocessConfig", "align_face", "eye_angle", "load_mtcnn_weights",
           "preprocess_images", "square_boxes"]
