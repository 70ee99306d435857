"""Stage runners: one ``fit`` of the CLI into a folder (reused when finished, resumed when interrupted), its
record, its evaluation on the held-out split, and the pruning and prediction steps the pipeline chains. The
checks of their configs before the first runs: ``distill.stage_checks``."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from distill.checkpoint import (
    DamagedFileError,
    atomic_write_text,
    load_trained,
    read_model_file,
    save_trained,
)
from distill.console import say
from distill.evaluation import score_split
from distill.fingerprint import differences, fingerprint, stage_settings
from distill.recipe import Recipe, merge
from distill.stage_checks import check_selection


class StageMismatchError(ValueError):
    """A stage folder holds a stage (finished or interrupted) of other settings or inputs than asked for."""


def check_same_stage(run_dir: Path, settings: dict[str, Any]) -> str:
    """The fingerprint of ``settings`` (``distill.fingerprint.stage_settings``), after checking that the stage folder
    holds nothing made from others: a changed setting, teacher or data set never reuses or resumes an old stage."""
    digest = fingerprint(settings)
    recorded = run_dir / "settings.json"
    trained = any((run_dir / p).exists() for p in ("stage.json", "checkpoints/last.ckpt"))
    if recorded.exists() and trained:
        try:
            old = json.loads(recorded.read_text())
        except ValueError as err:
            raise StageMismatchError(f"{recorded} is damaged ({err}), so what {run_dir} was trained with is unknown: "
                                     "delete that folder to train the stage again, or use a new --out") from None
        if old.get("fingerprint") != digest:
            changed = differences(old.get("settings", {}), settings)
            raise StageMismatchError(
                f"{run_dir} holds a stage made with other settings or inputs, so it is neither reused nor resumed:\n  "
                + "\n  ".join(changed[:20]) + (f"\n  ... and {len(changed) - 20} more" if len(changed) > 20 else "")
                + "\nuse a new --out for the new settings (or delete that folder to train the stage again)")
    return digest


@dataclass
class StageRecord:
    """What a finished ``fit`` stage leaves in its ``stage.json``."""

    val_f1: float
    seconds: float
    checkpoint: str | None  # None for a record of scores only (a teacher ensemble: its members hold the files)
    config: str | None
    model_file: str | None
    seed: int
    input_size: int
    base_size: int
    cache_fill_seconds: float = 0.0  # the teacher-output fill inside this stage (part of ``seconds``)
    holdout_f1: float | None = None  # the selected checkpoint on the held-out split (data.holdout_fraction)
    holdout_file: str | None = None  # its per-image predictions (holdout.json), for paired comparisons
    train_f1: float | None = None  # macro F1 on the training views, last epoch (under-/over-fitting)
    last_val_f1: float | None = None  # val F1 of the last epoch (the selected one is the best: optimistic)
    # the last epoch's weights on the held-out split: no checkpoint selection, so no noise from a maximum over many
    # epochs on a small validation set
    last_holdout_f1: float | None = None
    last_holdout_file: str | None = None
    # the last epoch's weights on the validation split, per image (val_last.json): the val split watched those
    # weights but did not choose them, so with the held-out split it makes a twice larger set of unseen images
    last_val_file: str | None = None
    precision: str | None = None  # the trainer's precision, as resolved (e.g. 32-true)
    fingerprint: str | None = None  # of the stage's resolved settings and inputs (``distill.fingerprint``)

    PATHS = ("checkpoint", "config", "model_file", "holdout_file", "last_holdout_file", "last_val_file")

    def save(self, path: Path) -> None:
        """Write the record with every file path relative to its own folder: a run folder can move or be copied."""
        folder = path.parent.resolve()
        data = asdict(self)
        for key in self.PATHS:
            if data[key] is not None:
                data[key] = Path(os.path.relpath(Path(data[key]).resolve(), folder)).as_posix()
        atomic_write_text(path, json.dumps(data, indent=2))

    @classmethod
    def load(cls, path: Path) -> "StageRecord":
        """Read a record, its file paths resolved against the folder it was read from."""
        data = json.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        for key in cls.PATHS:
            if data.get(key) is not None:
                data[key] = str(path.parent / data[key])
        return cls(**data)


def run_fit(configs: list[Path], run_dir: Path, settings: dict[str, Any], seed: int) -> StageRecord:
    """One ``fit`` of the CLI into ``run_dir`` (reused if finished, resumed if interrupted)."""
    from distill.cli import build_cli

    flat = stage_settings(configs, settings, seed)
    digest = check_same_stage(run_dir, flat)
    finished = finished_stage(run_dir)
    if finished is not None:
        return finished
    checkpoints = run_dir / "checkpoints"
    resume = resume_point(checkpoints / "last.ckpt")
    say(f"[pipeline] fit {run_dir} (seed {seed})" + (f", resuming from {resume}" if resume else ""))
    cli = build_cli(merge(settings, {"seed_everything": seed, "trainer": {"default_root_dir": str(run_dir)},
                                     "checkpoint": {"dirpath": str(checkpoints)},
                                     "last_checkpoint": {"dirpath": str(checkpoints)}}),
                    run=False, config_files=configs)
    selection = cli.config_init["checkpoint"]
    check_selection(selection.monitor, selection.mode)  # before training (the pipeline checked it before any stage)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "settings.json", json.dumps({"fingerprint": digest, "settings": flat}, indent=1,
                                                            default=str))
    cli.trainer.fit(cli.model, cli.datamodule, ckpt_path=str(resume) if resume else None)
    record = record_stage(cli, run_dir, seed, digest)
    if record.holdout_f1 is not None:
        say(f"[pipeline] {run_dir}: val macro F1 {record.val_f1:.4f} (selected), held-out {record.holdout_f1:.4f} "
            f"(last epoch {record.last_holdout_f1:.4f})")
    return record


def finished_stage(run_dir: Path) -> StageRecord | None:
    """The record of a stage finished in ``run_dir`` whose model file loads, or None (not finished, or to be run
    again: its model file is damaged or missing)."""
    if not (run_dir / "stage.json").exists():
        return None
    record = StageRecord.load(run_dir / "stage.json")
    if record.fingerprint is None:
        say(f"[pipeline] {run_dir} was recorded before stage fingerprints: reused without checking its settings")
    try:
        load_trained(record.model_file)
    except (OSError, ValueError) as err:  # a damaged or missing model file: rebuild the stage
        say(f"[pipeline] stage {run_dir} is finished but its model does not load ({err}); running it again")
        return None
    say(f"[pipeline] reusing finished stage {run_dir} (val macro F1 {record.val_f1:.4f})")
    return record


def resume_point(last: Path) -> Path | None:
    """``last`` (an interrupted stage's ``last.ckpt``) to resume from, or None: none there, or damaged (then set aside
    as ``last.ckpt.damaged`` and the stage starts afresh)."""
    if not last.exists():
        return None
    try:
        read_model_file(last)
    except DamagedFileError as err:
        say(f"[pipeline] {err}: starting the stage afresh (the damaged file is kept as last.ckpt.damaged)")
        last.replace(last.with_name("last.ckpt.damaged"))
        return None
    return last


def record_stage(cli: Any, run_dir: Path, seed: int, digest: str) -> StageRecord:
    """After a stage's fit: its selected weights exported as ``model.pt``, scored on the held-out split (the selected
    and the last epoch's weights) and the last epoch's on the val split, and the record written to ``stage.json``."""
    from lightning.pytorch.callbacks import EarlyStopping

    selection, datamodule, trainer = cli.config_init["checkpoint"], cli.datamodule, cli.trainer
    model, meta = load_trained(selection.best_model_path)
    data = datamodule.hparams  # the images no stage trained on, for `distill report`
    exported = save_trained(run_dir / "model.pt", model, meta["model"], meta["num_classes"], meta["class_names"],
                            base_size=meta["base_size"],
                            holdout={"fraction": data.holdout_fraction, "seed": data.holdout_seed},
                            # a cross-fitted teacher's fold (the images it never trained on), checked where it is used
                            **({"cross_fit": {"fold": data.cross_fit_fold, "folds": data.cross_fit_folds}}
                               if data.get("cross_fit_fold") is not None else {}))
    logged = {key: float(trainer.callback_metrics[key]) for key in ("val/f1", "train/f1")
              if key in trainer.callback_metrics}
    if selection.monitor == "val/f1" and selection.best_model_score is not None:
        val_f1 = float(selection.best_model_score)
    else:  # the last epoch is the selected one (check_selection): its val F1 is the last one logged
        val_f1 = logged.get("val/f1", meta["val_f1"])
    holdout_f1, holdout_file = score_split(model, datamodule, "holdout", run_dir / "holdout.json")
    last_holdout_f1, last_holdout_file = score_split(cli.model.net, datamodule, "holdout", run_dir / "holdout_last.json")
    stopped_on_val = any(isinstance(c, EarlyStopping) for c in trainer.callbacks)  # then val chose the last
    _, last_val_file = (None, None) if stopped_on_val else score_split(cli.model.net, datamodule, "val",
                                                                       run_dir / "val_last.json")
    record = StageRecord(val_f1=float(val_f1), seconds=cli.config_init["stage_clock"].seconds,  # every run of it
                         checkpoint=str(selection.best_model_path), config=str(Path(trainer.log_dir) / "config.yaml"),
                         model_file=str(exported), seed=seed, input_size=meta["input_size"],
                         base_size=meta["base_size"], cache_fill_seconds=cli.config_init["teacher_cache"].fill_seconds,
                         holdout_f1=holdout_f1, holdout_file=holdout_file, last_holdout_f1=last_holdout_f1,
                         last_holdout_file=last_holdout_file, last_val_file=last_val_file,
                         train_f1=logged.get("train/f1"), last_val_f1=logged.get("val/f1"),
                         precision=str(trainer.precision), fingerprint=digest)
    record.save(run_dir / "stage.json")
    return record


def run_cache(configs: list[Path], settings: dict[str, Any], seed: int):
    """The teacher-output cache as its own stage (``distill.cache_stage``): filled, resumed or reused before
    any student of these settings trains; None when they have no teacher to cache."""
    from distill.cache_stage import fill_cache

    say("[pipeline] teacher-output cache")
    return fill_cache(merge(settings, {"seed_everything": seed, "trainer": {"logger": False}}), configs)


def run_ensemble_eval(configs: list[Path], settings: dict[str, Any], run_dir: Path,
                      members: list[StageRecord]) -> StageRecord:
    """A teacher ensemble (``settings``' ``teacher.weights``: a list) scored on the val and held-out splits as
    each member's stage was (reused when ``run_dir/stage.json`` exists): a record with the ensemble's F1s and the
    members' summed fine-tune time; no model files (the members hold them)."""
    from distill.cli import build_cli

    record_path = run_dir / "stage.json"
    if record_path.exists():
        record = StageRecord.load(record_path)
        say(f"[pipeline] reusing the teacher ensemble's scores {run_dir} (val macro F1 {record.val_f1:.4f})")
        return record
    cli = build_cli(merge(settings, {"trainer": {"logger": False}}), run=False, config_files=configs)
    teacher = cli.model.build_teacher()
    datamodule = cli.datamodule
    datamodule.setup("fit")
    run_dir.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():  # on the images the students get (their base size), through the teacher's preprocess
        val_f1, _ = score_split(teacher.model, datamodule, "val", run_dir / "val.json")
        holdout_f1, holdout_file = score_split(teacher.model, datamodule, "holdout", run_dir / "holdout.json")
    if val_f1 is None:
        raise ValueError("a teacher ensemble is scored on the students' validation split, and they have none")
    record = replace(members[0], val_f1=val_f1, seconds=sum(m.seconds for m in members), holdout_f1=holdout_f1,
                     holdout_file=holdout_file, last_holdout_f1=holdout_f1, last_holdout_file=holdout_file,
                     train_f1=None, last_val_f1=val_f1, last_val_file=str(run_dir / "val.json"),
                     checkpoint=None, config=None, model_file=None, fingerprint=None)  # no files of its own
    record.save(record_path)
    say(f"[pipeline] teacher ensemble of {len(members)}: val macro F1 {record.val_f1:.4f}"
        + (f", held-out {holdout_f1:.4f}" if holdout_f1 is not None else "")
        + f" (members {[round(m.val_f1, 4) for m in members]})")
    return record


def run_prune(stage: StageRecord, path: Path, macs: int, tolerance: float = 0.02) -> dict[str, Any]:
    """Prune the stage's model to ``macs`` (reused if ``path`` exists); returns the student settings of the
    fine-tune: the pruned definition and its weights file."""
    from distill.prune import prune_file

    if path.is_file():
        say(f"[pipeline] reusing pruned model {path}")
    else:
        prune_file(stage.model_file, macs, path, tolerance)
    definition = read_model_file(path)["model"]
    return {"model": {"init_args": {"student": definition, "weights": str(path)}}}


def run_predict(stage: StageRecord, out_dir: Path, predict_dir: Path | None, layout: str,
                data_root: str | None = None) -> Path | None:
    """``predict`` with the stage's own config and best checkpoint: ``submission.csv`` in ``out_dir``
    (``data_root``: the data as this run names it, which a moved folder's config may name otherwise)."""
    from distill.cli import build_cli

    args: dict[str, Any] = {"submission": {"out_dir": str(out_dir), "layout": layout, "overwrite": True},
                            "trainer": {"logger": False}}
    if data_root is not None:
        args["data"] = {"root": str(data_root)}
    if predict_dir is not None:
        args = merge(args, {"data": {"predict_dir": str(predict_dir)}})
    cli = build_cli(args, run=False, config_files=[stage.config])
    cli.trainer.predict(cli.model, cli.datamodule, ckpt_path=stage.checkpoint)
    return cli.config_init["submission"].written


def student_stage(recipe: Recipe, out: Path, settings: dict[str, Any], seed: int) -> StageRecord:
    """One KD student; with a ``prune.yaml``: a larger student trained, pruned to the budget, fine-tuned."""
    prune = recipe.prune()
    if prune is None:
        return run_fit(recipe.configs("student"), out / "student_kd" / f"seed_{seed}", settings, seed)
    large = run_fit(recipe.configs("student"), out / "student_large" / f"seed_{seed}",
                    merge(settings, prune.get("train") or {}), seed)
    pruned = run_prune(large, out / "student_pruned" / f"seed_{seed}" / "model.pt", prune["macs"],
                       prune.get("tolerance", 0.02))
    tuned = run_fit(recipe.configs("student"), out / "student_kd" / f"seed_{seed}",
                    merge(merge(settings, pruned), prune.get("finetune") or {}), seed)
    return replace(tuned, seconds=large.seconds + tuned.seconds,  # the pruning itself takes seconds
                   cache_fill_seconds=large.cache_fill_seconds + tuned.cache_fill_seconds)
