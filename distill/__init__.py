"""Knowledge distillation of image classifiers into tiny students for on-device waste sorting.

Layers, bottom up (``tests/test_structure.py`` checks them): ``distill.models`` (networks, the repository folder
``models/``) -> data and losses (``distill.preprocess``, ``distill.data``, ``distill.losses``, ``distill.teacher``
...) -> modules (``distill.module``, ``distill.cache``, callbacks) -> ``distill.cli`` -> stages (``distill.recipe``,
``distill.stages``, ``distill.cache_stage``) -> commands (``distill.pipeline``, ``distill.commands`` ...).

Importing the library changes no global state (warning filters, logger levels): the ``distill`` command
quiets known third-party notices for itself (``distill.console.quiet_third_party``). The names below are
imported when first used, so ``import distill`` (and ``distill --help``) does not load torch.
"""
from __future__ import annotations

import importlib
import os
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

_EXPORTS = {
    "F1_BASE": "distill.competition", "MACS_BASE": "distill.competition", "check_rules": "distill.competition",
    "competition_macs": "distill.competition", "competition_score": "distill.competition",
    "describe": "distill.competition", "count_macs": "distill.complexity", "count_params": "distill.complexity",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'distill' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
