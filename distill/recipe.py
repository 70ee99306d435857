"""Recipes: which config files make each stage, composed on the shipped ``base`` recipe, plus ``--set`` overrides.

A recipe is a folder with ``teacher.yaml`` and ``student.yaml`` (and optionally ``prune.yaml``, or a ``recipe.yaml``
with ``extends: <recipe>``, ``teachers`` or ``baselines``); the shipped ones are ``distill.recipes`` (the repository folder ``recipes/``).
"""
from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

STAGES = ("teacher", "student")


@dataclass(frozen=True)
class Recipe:
    """A folder with ``teacher.yaml`` and ``student.yaml``, composed on top of the shipped ``base`` recipe.

    A ``recipe.yaml`` with ``extends: <recipe>`` composes on top of that recipe instead; then the folder's
    own ``teacher.yaml`` / ``student.yaml`` are optional (e.g. a recipe that only adds ``prune.yaml``)."""

    folder: Path
    parent: "Recipe | None" = None

    @staticmethod
    def shipped() -> Path:
        return Path(str(resources.files("distill.recipes")))

    @classmethod
    def shipped_names(cls) -> list[str]:
        """The recipes shipped with the library, by name (``base`` is every recipe's first layer, not a recipe)."""
        return sorted(p.name for p in cls.shipped().iterdir() if p.is_dir() and p.name not in ("base", "__pycache__"))

    @classmethod
    def find(cls, name_or_path: str | Path) -> "Recipe":
        """A recipe folder, or the name of one shipped with the library (``demo``, ``trashnet``, ``target``...).

        A bare name (no path separator) is a local folder only when that folder holds a recipe (``teacher.yaml`` or
        ``recipe.yaml``): a data or output folder that happens to share a shipped recipe's name does not hide it."""
        path = Path(name_or_path)
        bare_name = isinstance(name_or_path, str) and "/" not in name_or_path and name_or_path not in (".", "..")
        holds_recipe = any((path / f).is_file() for f in ("teacher.yaml", "recipe.yaml"))
        shipped = cls.shipped() / str(name_or_path)
        if bare_name and not holds_recipe and shipped.is_dir():
            folder = shipped
        else:
            folder = path if path.is_dir() else shipped
        if not folder.is_dir():
            raise FileNotFoundError(f"recipe {name_or_path!r}: no such folder, and no shipped recipe of that name "
                                    f"(shipped: {cls.shipped_names()})")
        meta = read_meta(folder)
        parent = cls.find(meta["extends"]) if meta.get("extends") else None
        if parent is None:
            for stage in STAGES:
                if not (folder / f"{stage}.yaml").is_file():
                    raise FileNotFoundError(f"recipe {folder}: {stage}.yaml not found")
        return cls(folder, parent)

    def configs(self, stage: str) -> list[Path]:
        """The config files of ``stage``, in the order they are composed."""
        inherited = self.parent.configs(stage) if self.parent else [self.shipped() / "base" / f"{stage}.yaml"]
        own = self.folder / f"{stage}.yaml"
        return inherited + ([own] if own.is_file() else [])

    def prune(self) -> dict[str, Any] | None:
        """The recipe's ``prune.yaml`` (``macs``; ``train``: settings of the larger student trained first;
        ``finetune``: settings of the fine-tune after pruning), or None."""
        path = self.folder / "prune.yaml"
        if not path.is_file():
            return self.parent.prune() if self.parent else None
        settings = yaml.safe_load(path.read_text()) or {}
        if not isinstance(settings.get("macs"), int) or settings["macs"] <= 0:
            raise ValueError(f"{path}: needs macs: <MAC budget, a positive integer>")
        unknown = set(settings) - {"macs", "tolerance", "train", "finetune"}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)} (macs, tolerance, train, finetune)")
        return settings

    def teachers(self) -> list[dict[str, Any]]:
        """The teacher fine-tunes, one per entry of ``recipe.yaml``'s ``teachers`` (overrides of ``teacher.yaml``,
        e.g. ``{data: {augment: strong}}``); with two or more, the students learn from the mean of their logits
        (``distill.teacher.MeanLogits``). Default: one, ``teacher.yaml`` as it is."""
        meta = read_meta(self.folder)
        if "teachers" not in meta:
            return self.parent.teachers() if self.parent else [{}]
        teachers = meta["teachers"]
        if not isinstance(teachers, list) or not teachers or not all(isinstance(t, dict) for t in teachers):
            raise ValueError(f"{self.folder / 'recipe.yaml'}: teachers must be a non-empty list of overrides of teacher.yaml "
                             "(use {} for teacher.yaml as it is), got " + repr(teachers))
        return teachers

    def baselines(self) -> dict[str, dict[str, Any]]:
        """The no-teacher arms ``--baseline`` trains beside the recipe's own student without its teacher: ``recipe.yaml``'s
        ``baselines``, a name for each and its overrides of ``student.yaml`` (nested, e.g. ``{model: {init_args:
        {weight_decay: 0.0005}}}``), applied on top of the no-teacher settings. The verdict sets the teacher's students
        against the strongest of them all. Default: none (inherited from the recipe extended)."""
        meta = read_meta(self.folder)
        if "baselines" not in meta:
            return self.parent.baselines() if self.parent else {}
        arms = meta["baselines"] or {}
        where = self.folder / "recipe.yaml"
        if not isinstance(arms, dict) or not all(isinstance(v, dict) for v in arms.values()):
            raise ValueError(f"{where}: baselines must map a name to overrides of student.yaml, got {arms!r}")
        for name in arms:
            if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"{where}: baseline name {name!r}: use letters, digits, '-' and '_' (a folder name)")
        return arms

    def data(self, stage: str = "student") -> dict[str, Any]:
        """The ``data`` settings of ``stage``'s config files, composed."""
        composed: dict[str, Any] = {}
        for path in self.configs(stage):
            composed = merge(composed, (yaml.safe_load(path.read_text()) or {}).get("data") or {})
        return composed

    def data_root(self) -> str | None:
        return self.data().get("root")


def read_meta(folder: Path) -> dict[str, Any]:
    """A recipe folder's ``recipe.yaml`` (``extends``, ``teachers``, ``baselines``), or {} without one."""
    meta_file = folder / "recipe.yaml"
    meta = (yaml.safe_load(meta_file.read_text()) or {}) if meta_file.is_file() else {}
    unknown = set(meta) - {"extends", "teachers", "baselines"}
    if unknown:
        raise ValueError(f"{meta_file}: unknown keys {sorted(unknown)} (extends, teachers, baselines)")
    return meta


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Nested dict ``override`` on top of ``base`` (a new dict; neither is changed)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def parse_setting(text: str) -> dict[str, Any]:
    """``"trainer.max_epochs=30"`` -> ``{"trainer": {"max_epochs": 30}}`` (the value read as YAML). A key under
    ``teacher.`` (``teacher.trainer.max_epochs=2``) is for the teacher's stage (``split_settings``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected KEY=VALUE, e.g. trainer.max_epochs=30")
    try:
        out: dict[str, Any] = yaml.safe_load(value)
    except yaml.YAMLError as err:
        problem = str(getattr(err, "problem", None) or err).strip()
        raise argparse.ArgumentTypeError(f"--set {text!r}: the value of {key} is not valid YAML ({problem}); quote "
                                         "strings and close brackets, e.g. --set 'trainer.max_epochs=30'") from None
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def split_settings(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--set`` overrides as (teacher stage, student stages): keys under ``teacher`` go to the teacher's
    fine-tune, every other key to the students (``model.init_args.teacher...`` is a student's teacher)."""
    students = {k: v for k, v in settings.items() if k != "teacher"}
    teacher = settings.get("teacher") or {}
    if not isinstance(teacher, dict):
        raise ValueError(f"--set teacher={teacher!r}: give the teacher stage's keys, e.g. teacher.trainer.max_epochs=2")
    return teacher, students
