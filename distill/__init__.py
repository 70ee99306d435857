"""Knowledge distillation of image classifiers into tiny students for on-device waste sorting.

Layers, bottom up: ``distill.models`` (networks, the repository folder ``models/``) -> ``distill.preprocess`` / ``distill.data`` / ``distill.losses`` /
``distill.teacher`` -> ``distill.module`` and its callbacks -> ``distill.cli`` -> ``distill.pipeline`` and the
other commands (``distill.commands``).

Importing the library changes no global state (warning filters, logger levels): the ``distill`` command
quiets known third-party notices for itself (``distill.console.quiet_third_party``).
"""
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from distill.competition import (  # noqa: E402
           F1_BASE,
           MACS_BASE,
           check_rules,
           competition_macs,
           competition_score,
           describe,
)
from distill.complexity import count_macs, count_params  # noqa: E402

__all__ = ["F1_BASE", "MACS_BASE", "check_rules", "competition_macs", "competition_score", "describe", "count_macs",
           "count_params"]
