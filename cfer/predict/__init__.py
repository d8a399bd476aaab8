"""Predictions out of a trained model: :class:`Predictor` on photos, face crops and videos, and ``cfer predict``.

Faces are found and aligned with MTCNN (:mod:`cfer.data.faces`), followed through videos
(:mod:`cfer.predict.faces`), classified by a checkpoint or an exported file
(:mod:`cfer.predict.loading`), and written as CSV, JSON, Grad-CAM overlays and annotated videos
(:mod:`cfer.predict.run`). ``cfer export`` (:mod:`cfer.predict.export`) writes a model as ONNX or
TorchScript through :mod:`cfer.models.export`, where the file formats live beside the checkpoints.
"""

from cfer.predict.annotate import AnnotatedVideo, draw_faces
from cfer.predict.export import ExportConfig, ExportSummary, format_export_summary, run_export
from cfer.predict.faces import Face, FaceFinder, FaceTracker, crop_face, whole_image_face
from cfer.predict.loading import LoadedClassifier, load_classifier, resolve_model_file, spec_from_checkpoint
from cfer.predict.predictor import FacePrediction, FramePrediction, Predictor, PredictorConfig
from cfer.predict.readers import BadVideoError, MediaFile, VideoFrame, VideoReader, as_rgb, collect_inputs
from cfer.predict.run import InputSummary, PredictConfig, PredictSummary, format_predict_summary, run_predict
from cfer.predict.writers import CSV_COLUMNS, FaceRecord, format_table, write_predictions

__all__ = [
    "CSV_COLUMNS",
    "AnnotatedVideo",
    "BadVideoError",
    "ExportConfig",
    "ExportSummary",
    "Face",
    "FaceFinder",
    "FacePrediction",
    "FaceRecord",
    "FaceTracker",
    "FramePrediction",
    "InputSummary",
    "LoadedClassifier",
    "MediaFile",
    "PredictConfig",
    "PredictSummary",
    "Predictor",
    "PredictorConfig",
    "VideoFrame",
    "VideoReader",
    "as_rgb",
    "collect_inputs",
    "crop_face",
    "draw_faces",
    "format_export_summary",
    "format_predict_summary",
    "format_table",
    "load_classifier",
    "resolve_model_file",
    "run_export",
    "run_predict",
    "spec_from_checkpoint",
    "whole_image_face",
    "write_predictions",
]
