"""cfer: continual and few-shot learning of compound facial expressions.

Implements Maiden & Nakisa (2023), "Complex Facial Expression Recognition Using Deep Knowledge
Distillation of Basic Features", on Avalanche, timm and pytorch-grad-cam. See the README.
"""

from cfer import taxonomy
from cfer.config import ConfigError, load_config, save_config
from cfer.data import FaceExpressionDataset, SyntheticConfig, SyntheticFaces, read_cfee

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "FaceExpressionDataset",
    "SyntheticConfig",
    "SyntheticFaces",
    "load_config",
    "read_cfee",
    "save_config",
    "taxonomy",
]
