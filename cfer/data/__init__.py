"""Datasets: the in-memory container, the embedded synthetic faces, the CFEE reader and splits."""

from cfer.data.cfee import (
    MANIFEST_NAME,
    read_cfee,
    read_manifest,
    read_prefix_map,
    write_cfee,
)
from cfer.data.dataset import FaceExpressionDataset, load_metadata
from cfer.data.splits import SubjectSplit, subject_kfold, train_val_test_split
from cfer.data.synthetic import (
    FaceRenderer,
    SyntheticConfig,
    SyntheticFaces,
    contact_sheet,
)

__all__ = [
    "FaceExpressionDataset",
    "FaceRenderer",
    "MANIFEST_NAME",
    "SubjectSplit",
    "SyntheticConfig",
    "SyntheticFaces",
    "contact_sheet",
    "load_metadata",
    "read_cfee",
    "read_manifest",
    "read_prefix_map",
    "subject_kfold",
    "train_val_test_split",
    "write_cfee",
]
