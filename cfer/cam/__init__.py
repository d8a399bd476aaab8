"""Class activation maps of expression classifiers, and numbers that say whether they are right.

An API over pytorch-grad-cam: methods by name (:func:`create_cam`), the target layer of any timm CNN
found automatically (:func:`find_target_layer`), maps by class name for batches with hooks released
(:class:`CamExplainer`), basic-compound maps and their similarity (:mod:`cfer.cam.compound`),
pointing-game scores against the synthetic faces' AU regions (:mod:`cfer.cam.scores`,
:mod:`cfer.cam.regions`), a linear probe that gives a basic-phase model compound outputs
(:func:`fit_linear_probe`), figures, and :func:`run_gradcam` behind ``cfer gradcam``.
"""

from cfer.cam.compound import SIMILARITY_KEYS, basic_compound_maps, compound_similarity, summarize_similarity
from cfer.cam.explainer import CamExplainer, ClassTarget
from cfer.cam.figures import overlay, plot_map_grid, plot_similarity
from cfer.cam.methods import (
    CAM_METHODS,
    CLASS_BLIND_METHODS,
    CamFactory,
    canonical_cam_name,
    create_cam,
    register_cam_method,
)
from cfer.cam.probe import ProbeConfig, fit_linear_probe, probe_accuracy
from cfer.cam.regions import active_au_mask, active_regions
from cfer.cam.run import GradCamConfig, format_gradcam_summary, load_explained_model, run_gradcam
from cfer.cam.scores import (
    energy_inside,
    pearson_correlation,
    pointing_hit,
    region_fraction,
    top_fraction_iou,
    top_fraction_mask,
)
from cfer.cam.target_layer import find_target_layer, resolve_target_layer

__all__ = [
    "CAM_METHODS",
    "CLASS_BLIND_METHODS",
    "SIMILARITY_KEYS",
    "CamExplainer",
    "CamFactory",
    "ClassTarget",
    "GradCamConfig",
    "ProbeConfig",
    "active_au_mask",
    "active_regions",
    "basic_compound_maps",
    "canonical_cam_name",
    "compound_similarity",
    "create_cam",
    "energy_inside",
    "find_target_layer",
    "fit_linear_probe",
    "format_gradcam_summary",
    "load_explained_model",
    "overlay",
    "pearson_correlation",
    "plot_map_grid",
    "plot_similarity",
    "pointing_hit",
    "probe_accuracy",
    "region_fraction",
    "register_cam_method",
    "resolve_target_layer",
    "run_gradcam",
    "summarize_similarity",
    "top_fraction_iou",
    "top_fraction_mask",
]
