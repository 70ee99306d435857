"""Knowledge distillation of image classifiers into tiny students for on-device waste sorting."""
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from distill.complexity import F1_BASE, MACS_BASE, competition_macs, competition_score, count_macs  # noqa: E402
from distill.rules import check_rules  # noqa: E402

__all__ = ["F1_BASE", "MACS_BASE", "competition_macs", "competition_score", "count_macs", "check_rules"]
