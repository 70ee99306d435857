"""Checks of a pipeline's stage configs before the first stage runs: each parses, selects weights a stage can
record, validates its last epoch, and the students' teacher is the network each fine-tune trains."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from distill.recipe import Recipe, merge


def check_selection(monitor: str | None, mode: str) -> None:
    """A stage exports the weights its ``checkpoint`` callback selects, and records their val F1: so the callback
    either ranks by ``val/f1`` (mode ``max``, the default: the best val epoch) or keeps the last epoch
    (``monitor: epoch``, mode ``max``; with a cosine schedule the converged weights, not a noisy maximum)."""
    if (monitor, mode) not in {("val/f1", "max"), ("epoch", "max"), ("step", "max")}:
        raise ValueError(f"checkpoint.monitor={monitor!r}, checkpoint.mode={mode!r}: a pipeline "
                         "stage selects either the best val F1 (monitor val/f1, mode max) or the last epoch "
                         "(monitor epoch, mode max)")


def check_last_epoch_validated(trainer: Any) -> None:
    """A stage exports and records the last epoch: with validation (and so the checkpoints) every N epochs, the last
    epoch must be one of them."""
    every, epochs = trainer.get("check_val_every_n_epoch") or 1, trainer.get("max_epochs")
    if every > 1 and epochs is not None and epochs % every:
        raise ValueError(f"trainer.max_epochs={epochs} is not a multiple of trainer.check_val_every_n_epoch={every}: "
                         "the last epoch would be neither validated nor saved; make it a multiple")


@dataclass(frozen=True)
class CheckedConfigs:
    """The parsed configs (jsonargparse namespaces) of a pipeline's stages."""

    teachers: list[Any]  # one per teacher fine-tune
    student: Any  # the students taught by the teacher
    baselines: dict[str, Any]  # each no-teacher arm, by name


def check_stages(recipe: Recipe, teacher_settings: list[dict[str, Any]], student_settings: dict[str, Any],
                 baselines: dict[str, dict[str, Any]] | None = None) -> CheckedConfigs:
    """Parse every stage's config (recipe files + overrides; one teacher fine-tune per entry of
    ``teacher_settings``; each no-teacher arm of ``baselines``, by name) before the first stage runs; the students'
    ``teacher.name`` must be the network each fine-tune trains. Returns the parsed configs."""
    from distill.cli import check_config

    nets: list[Any] = []  # each fine-tune's network: the students' teacher must be built as the same one
    teachers: list[Any] = []
    for i, settings in enumerate(teacher_settings):
        try:
            config = check_config(settings, recipe.configs("teacher"))
        except ValueError as err:  # name the recipe.yaml entry when there are several teachers
            if len(teacher_settings) == 1:
                raise
            raise ValueError(f"teacher {i + 1} of {len(teacher_settings)} (recipe.yaml teachers[{i}]): {err}") from None
        check_selection(config.checkpoint.monitor, config.checkpoint.mode)
        check_last_epoch_validated(config.trainer)
        nets.append(config.model.init_args.get("net"))
        teachers.append(config)
    config = check_config(student_settings, recipe.configs("student"))
    check_selection(config.checkpoint.monitor, config.checkpoint.mode)
    check_last_epoch_validated(config.trainer)
    teacher = config.model.init_args.get("teacher")
    for i, net in enumerate(nets):
        if teacher is not None and isinstance(net, str) and teacher.name != net:
            which = f"teacher {i + 1} of {len(nets)} (recipe.yaml teachers[{i}])" if len(nets) > 1 else "the teacher"
            raise ValueError(f"{which} is fine-tuned as {net} (teacher.model.init_args.net) but the students are "
                             f"taught by {teacher.name} (model.init_args.teacher.name): set both to one model, e.g. "
                             f"--set teacher.model.init_args.net={net} --set model.init_args.teacher.name={net}")
    arms: dict[str, Any] = {}
    for name, settings in (baselines or {}).items():
        try:
            arms[name] = check_config(settings, recipe.configs("student"))
            check_last_epoch_validated(arms[name].trainer)
        except ValueError as err:
            raise ValueError(f"no-teacher arm {name!r}: {err}") from None
    prune = recipe.prune()
    if prune is not None:
        for part in ("train", "finetune"):
            part_config = check_config(merge(student_settings, prune.get(part) or {}), recipe.configs("student"))
            check_last_epoch_validated(part_config.trainer)
    return CheckedConfigs(teachers, config, arms)
