"""The embedded synthetic dataset: FACS-driven procedural faces, rendered offline."""

from cfer.data.synthetic.contact_sheet import contact_sheet
from cfer.data.synthetic.dataset import SyntheticConfig, SyntheticFaces
from cfer.data.synthetic.renderer import (
    AU_REGION,
    REGIONS,
    FaceRenderer,
    RenderedBatch,
    sample_expression,
)
from cfer.data.synthetic.subjects import RENDERED_AUS, SubjectTraits, make_subject

__all__ = [
    "AU_REGION",
    "FaceRenderer",
    "REGIONS",
    "RENDERED_AUS",
    "RenderedBatch",
    "SubjectTraits",
    "SyntheticConfig",
    "SyntheticFaces",
    "contact_sheet",
    "make_subject",
    "sample_expression",
]
