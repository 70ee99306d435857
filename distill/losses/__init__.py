"""Losses: one file per distillation method under ``DistillLoss``, label losses under ``LabelLoss``.

In YAML: ``model.distill_loss: {class_path: distill.losses.DIST, init_args: {beta: 1.0}}``; any importable
``DistillLoss`` subclass works the same way, with no change to the module.
"""
from distill.losses.base import DistillLoss, LabelLoss, Terms, standardize
from distill.losses.dist import DIST
from distill.losses.dkd import DKD, dkd_terms
from distill.losses.focal import (
           ALPHA_RULES,
           CrossEntropy,
           Focal,
           class_alpha,
           focal_loss,
)
from distill.losses.kd import KD, kd_loss
from distill.losses.wttm import WTTM, wttm_loss

__all__ = ["DistillLoss", "LabelLoss", "Terms", "standardize", "KD", "kd_loss", "DKD", "dkd_terms", "DIST", "WTTM", "wttm_loss",
           "Focal", "CrossEntropy", "focal_loss", "class_alpha", "ALPHA_RULES"]
