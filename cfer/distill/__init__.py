"""Distillation of an ensemble of multi-task teachers into a lightweight student (Lee et al. 2023; EmoXNet)."""

from cfer.distill.config import STUDENT_KINDS, DistillConfig, MemberSpec
from cfer.distill.metrics import affect_metrics, ccc, model_cost
from cfer.distill.reports import format_distill_summary
from cfer.distill.runner import run_distillation

__all__ = ["STUDENT_KINDS", "DistillConfig", "MemberSpec", "affect_metrics", "ccc", "format_distill_summary",
           "model_cost", "run_distillation"]
