"""cfer: continual and few-shot learning of compound facial expressions.

Implements Maiden & Nakisa (2023), "Complex Facial Expression Recognition Using Deep Knowledge
Distillation of Basic Features", on Avalanche, timm and pytorch-grad-cam. See the README.
"""

from typing import Any

from cfer import taxonomy
from cfer.config import ConfigError, load_config, save_config
from cfer.data import FaceExpressionDataset, SyntheticConfig, SyntheticFaces, read_cfee

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "FaceExpressionDataset",
    "Predictor",
    "SyntheticConfig",
    "SyntheticFaces",
    "load_config",
    "read_cfee",
    "save_config",
    "taxonomy",
]


def __getattr__(name: str) -> Any:
    # cfer.Predictor is imported on first use: it pulls in the face detector, the models and OpenCV,
    # which `import cfer` alone should not pay for
    if name == "Predictor":
        from cfer.predict import Predictor

        return Predictor
    raise AttributeError(f"module 'cfer' has no attribute {name!r}")
