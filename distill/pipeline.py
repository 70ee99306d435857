"""The whole job in one command: fine-tune the teacher, distil the student, evaluate, write the submission.

    distill pipeline --demo runs/demo                       # built-in synthetic data, no downloads
    distill pipeline --recipe trashnet --out runs/trashnet --seeds 0 1 2 --baseline
    distill pipeline --recipe trashnet --out runs/x --set trainer.max_epochs=30 --set teacher_cache.views=64

Each stage is a ``fit`` of the Lightning CLI (``distill.cli``) built from the recipe's configs (the
shipped ``base`` first, then the recipe's own) plus a dict of overrides. A finished stage (its
``stage.json``) is reused when the command runs again; an interrupted one resumes from its ``last.ckpt``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from distill.checkpoint import (
    DamagedFileError,
    atomic_write_text,
    load_trained,
    read_model_file,
    save_trained,
)
from distill.console import say
from distill.precision import machine_info, resolve

STAGES = ("teacher", "student")
HOLDOUT_KEYS = ("holdout_fraction", "holdout_seed")


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
    def find(cls, name_or_path: str | Path) -> "Recipe":
        """A recipe folder, or the name of one shipped with the library (``demo``, ``trashnet``, ``target``...)."""
        path = Path(name_or_path)
        folder = path if path.is_dir() else cls.shipped() / str(name_or_path)
        if not folder.is_dir():
            names = sorted(p.name for p in cls.shipped().iterdir() if p.is_dir() and p.name not in ("base", "__pycache__"))
            raise FileNotFoundError(f"recipe {name_or_path!r}: no such folder, and no shipped recipe of that name "
                                    f"(shipped: {names})")
        meta_file = folder / "recipe.yaml"
        meta = (yaml.safe_load(meta_file.read_text()) or {}) if meta_file.is_file() else {}
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

    def data(self, stage: str = "student") -> dict[str, Any]:
        """The ``data`` settings of ``stage``'s config files, composed."""
        composed: dict[str, Any] = {}
        for path in self.configs(stage):
            composed = merge(composed, (yaml.safe_load(path.read_text()) or {}).get("data") or {})
        return composed

    def data_root(self) -> str | None:
        return self.data().get("root")


@dataclass
class StageRecord:
    """What a finished ``fit`` stage leaves in its ``stage.json``."""

    val_f1: float
    seconds: float
    checkpoint: str
    config: str
    model_file: str
    seed: int
    input_size: int
    base_size: int
    cache_fill_seconds: float = 0.0  # the teacher-output fill inside this stage (part of ``seconds``)
    holdout_f1: float | None = None  # the selected checkpoint on the held-out split (data.holdout_fraction)
    holdout_file: str | None = None  # its per-image predictions (holdout.json), for paired comparisons
    train_f1: float | None = None  # macro F1 on the training views, last epoch (under-/over-fitting)
    last_val_f1: float | None = None  # val F1 of the last epoch (the selected one is the best: optimistic)
    precision: str | None = None  # the trainer's precision, as resolved (e.g. 32-true)

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> "StageRecord":
        return cls(**json.loads(path.read_text()))


class OutputLock:
    """An exclusive lock on an output folder for one pipeline at a time (``fcntl.flock`` on ``.distill.lock``:
    released by the kernel when the holder exits, however it exits). A second run says who holds it."""

    def __init__(self, out: Path, command: str = ""):
        self.path, self.command, self.handle = Path(out) / ".distill.lock", command, None

    def __enter__(self) -> "OutputLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise OutputInUseError(f"{self.path.parent} is in use by another pipeline ({holder}); wait for it to "
                                   "finish or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}: {self.command}\n")
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.truncate(0)
            self.handle.close()  # closing releases the lock


class OutputInUseError(RuntimeError):
    """The output folder is locked by another running pipeline."""


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Nested dict ``override`` on top of ``base`` (a new dict; neither is changed)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def parse_setting(text: str) -> dict[str, Any]:
    """``"trainer.max_epochs=30"`` -> ``{"trainer": {"max_epochs": 30}}`` (the value read as YAML)."""
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


def run_fit(configs: list[Path], run_dir: Path, settings: dict[str, Any], seed: int) -> StageRecord:
    """One ``fit`` of the CLI into ``run_dir`` (reused if finished, resumed if interrupted)."""
    from distill.cli import build_cli

    record_path = run_dir / "stage.json"
    if record_path.exists():
        record = StageRecord.load(record_path)
        try:
            load_trained(record.model_file)
        except (OSError, ValueError) as err:  # a damaged or missing model file: rebuild the stage
            say(f"[pipeline] stage {run_dir} is finished but its model does not load ({err}); running it again")
        else:
            say(f"[pipeline] reusing finished stage {run_dir} (val macro F1 {record.val_f1:.4f})")
            return record
    checkpoints = run_dir / "checkpoints"
    args = merge(settings, {"seed_everything": seed, "trainer": {"default_root_dir": str(run_dir)},
                            "checkpoint": {"dirpath": str(checkpoints)},
                            "last_checkpoint": {"dirpath": str(checkpoints)}})
    resume = checkpoints / "last.ckpt"
    if resume.exists():
        try:
            read_model_file(resume)
        except DamagedFileError as err:
            say(f"[pipeline] {err}: starting the stage afresh (the damaged file is kept as last.ckpt.damaged)")
            resume.replace(resume.with_name("last.ckpt.damaged"))
    say(f"[pipeline] fit {run_dir} (seed {seed})" + (f", resuming from {resume}" if resume.exists() else ""))
    start = time.time()
    cli = build_cli(args, run=False, config_files=configs)
    cli.trainer.fit(cli.model, cli.datamodule, ckpt_path=str(resume) if resume.exists() else None)
    seconds = time.time() - start
    best_callback = cli.config_init["checkpoint"]
    model, meta = load_trained(best_callback.best_model_path)
    exported = save_trained(run_dir / "model.pt", model, meta["model"], meta["num_classes"], meta["class_names"],
                            base_size=meta["base_size"])
    val_f1 = best_callback.best_model_score if best_callback.best_model_score is not None else meta["val_f1"]
    holdout_f1, holdout_file = evaluate_holdout(model, cli.datamodule, run_dir / "holdout.json")
    logged = cli.trainer.callback_metrics
    record = StageRecord(val_f1=float(val_f1), seconds=seconds, checkpoint=str(best_callback.best_model_path),
                         config=str(Path(cli.trainer.log_dir) / "config.yaml"), model_file=str(exported), seed=seed,
                         input_size=meta["input_size"], base_size=meta["base_size"],
                         cache_fill_seconds=cli.config_init["teacher_cache"].fill_seconds,
                         holdout_f1=holdout_f1, holdout_file=holdout_file,
                         train_f1=float(logged["train/f1"]) if "train/f1" in logged else None,
                         last_val_f1=float(logged["val/f1"]) if "val/f1" in logged else None,
                         precision=str(cli.trainer.precision))
    record.save(record_path)
    if holdout_f1 is not None:
        say(f"[pipeline] {run_dir}: val macro F1 {record.val_f1:.4f} (selected), held-out {holdout_f1:.4f}")
    return record


def evaluate_holdout(model: torch.nn.Module, datamodule: Any, path: Path) -> tuple[float | None, str | None]:
    """Macro F1 of ``model`` on the data module's held-out split, with its per-image predictions written to
    ``path``; ``(None, None)`` when the recipe holds out nothing."""
    from distill.evaluation import macro_f1, predict_labels

    if not getattr(datamodule, "holdout_samples", None):
        return None, None
    datamodule.setup("test")
    dataset = datamodule.holdout_set
    labels = [s.label for s in dataset.samples]
    preds = predict_labels(model, dataset)
    f1 = macro_f1(np.array(labels), preds, datamodule.num_classes)
    root = datamodule.root
    atomic_write_text(path, json.dumps({"f1": f1, "class_names": datamodule.class_names,
                                        "paths": [s.path.relative_to(root).as_posix() for s in dataset.samples],
                                        "labels": labels, "preds": preds.tolist()}))
    return f1, str(path)


def compare_on_holdout(kd: list[StageRecord], ce: list[StageRecord]) -> dict[str, Any] | None:
    """KD minus no teacher on the held-out split: 3-seed means and a paired bootstrap interval over images."""
    from distill.evaluation import paired_bootstrap

    if not kd or not ce or any(r.holdout_file is None for r in kd + ce):
        return None
    runs = [json.loads(Path(r.holdout_file).read_text()) for r in kd + ce]
    if any(run["paths"] != runs[0]["paths"] for run in runs):
        raise ValueError("the KD and no-teacher stages held out different images: compare only runs of one recipe")
    comparison = paired_bootstrap(np.array(runs[0]["labels"]), [np.array(r["preds"]) for r in runs[: len(kd)]],
                                  [np.array(r["preds"]) for r in runs[len(kd):]], len(runs[0]["class_names"]))
    return {**asdict(comparison), "images": len(runs[0]["labels"])}


def check_stages(recipe: Recipe, teacher_settings: dict[str, Any], student_settings: dict[str, Any]) -> None:
    """Parse every stage's config (recipe files + overrides) before the first stage runs."""
    from distill.cli import check_config

    check_config(teacher_settings, recipe.configs("teacher"))
    check_config(student_settings, recipe.configs("student"))
    prune = recipe.prune()
    if prune is not None:
        for part in ("train", "finetune"):
            check_config(merge(student_settings, prune.get(part) or {}), recipe.configs("student"))


def run_prune(stage: StageRecord, path: Path, macs: int, tolerance: float = 0.02) -> dict[str, Any]:
    """Prune the stage's model to ``macs`` (reused if ``path`` exists); returns the student settings of the
    fine-tune: the pruned definition and its weights file."""
    from distill.prune import prune_file

    if path.is_file():
        say(f"[pipeline] reusing pruned model {path}")
    else:
        prune_file(stage.model_file, macs, path, tolerance)
    definition = torch.load(path, map_location="cpu", weights_only=True)["model"]
    return {"model": {"init_args": {"student": definition, "weights": str(path)}}}


def run_predict(stage: StageRecord, out_dir: Path, predict_dir: Path | None, layout: str) -> Path | None:
    """``predict`` with the stage's own config and best checkpoint: ``submission.csv`` in ``out_dir``."""
    from distill.cli import build_cli

    args: dict[str, Any] = {"submission": {"out_dir": str(out_dir), "layout": layout, "overwrite": True},
                            "trainer": {"logger": False}}
    if predict_dir is not None:
        args["data"] = {"predict_dir": str(predict_dir)}
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


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _rounded(values: list[float | None]) -> list[float | None]:
    return [None if v is None else round(v, 4) for v in values]


def run_pipeline(recipe: Recipe, out: Path, data_root: str | None, seeds: list[int], baseline: bool,
                 predict_dir: Path | None, layout: str = "csv", results_json: Path | None = None,
                 settings: dict[str, Any] | None = None, teacher_only: bool = False,
                 command: str = "") -> dict[str, Any]:
    """Teacher fine-tune -> student KD (per seed) [-> student without teacher] -> submission + report.

    ``settings``: overrides for the student stages (nested dict, as ``--set`` gives)."""
    from distill.competition import competition_score, describe

    data_root = data_root or recipe.data_root()
    data = {"data": {"root": data_root}}
    student_settings = merge(data, settings or {})
    # the teacher holds out exactly the images the students hold out (never trained on by any stage)
    student_data = merge(recipe.data(), student_settings["data"])
    holdout = {k: student_data[k] for k in HOLDOUT_KEYS if k in student_data}
    teacher_settings = merge(data, {"data": holdout})
    with_teacher = merge(student_settings, {
        "model": {"init_args": {"teacher": {"weights": str(out / "teacher" / "model.pt")}}},
        "teacher_cache": {"cache_dir": str(out / "teacher_cache")}})
    check_stages(recipe, teacher_settings, with_teacher)  # a typo fails now, not after the teacher's fine-tune
    t0 = time.time()
    teacher = run_fit(recipe.configs("teacher"), out / "teacher", teacher_settings, seeds[0])
    if teacher_only:
        return {"teacher_f1": teacher.val_f1, "seconds": {"teacher": teacher.seconds}}
    with_teacher = merge(with_teacher, {"model": {"init_args": {"teacher": {"weights": teacher.model_file}}}})
    without_teacher = merge(student_settings, {"model": {"init_args": {"teacher": None}}})
    kd = [student_stage(recipe, out, with_teacher, s) for s in seeds]
    ce = [run_fit(recipe.configs("student"), out / "student_ce" / f"seed_{s}", without_teacher, s)
          for s in seeds] if baseline else []

    best = max(kd, key=lambda r: r.val_f1)  # one model, selected on the validation split
    student, meta = load_trained(best.model_file)
    info = describe(student, meta["input_size"])
    predict_dir = predict_dir or Path(data_root) / "test" / "NoLabel"
    submission = None
    t_predict = time.time()
    if predict_dir.is_dir():
        submission = run_predict(best, out, predict_dir, layout)
    else:
        say(f"[pipeline] no prediction folder {predict_dir}: skipping the submission")
    summary = {
        "teacher_f1": teacher.val_f1,
        "student_kd_f1": _mean([r.val_f1 for r in kd]),
        "student_ce_f1": _mean([r.val_f1 for r in ce]),
        "student_kd_f1_per_seed": [r.val_f1 for r in kd],
        "student_ce_f1_per_seed": [r.val_f1 for r in ce],
        "teacher_holdout_f1": teacher.holdout_f1,
        "student_kd_holdout_f1": _mean([r.holdout_f1 for r in kd if r.holdout_f1 is not None]),
        "student_ce_holdout_f1": _mean([r.holdout_f1 for r in ce if r.holdout_f1 is not None]),
        "student_kd_holdout_f1_per_seed": [r.holdout_f1 for r in kd],
        "student_ce_holdout_f1_per_seed": [r.holdout_f1 for r in ce],
        "kd_minus_ce_holdout": compare_on_holdout(kd, ce),
        "student_kd_last_val_f1_per_seed": [r.last_val_f1 for r in kd],
        "student_ce_last_val_f1_per_seed": [r.last_val_f1 for r in ce],
        "student_kd_train_f1_per_seed": [r.train_f1 for r in kd],
        "student_ce_train_f1_per_seed": [r.train_f1 for r in ce],
        "seeds": seeds,
        "student_macs": info["macs_fvcore"], "student_macs_competition": info["macs_competition"],
        "student_params": info["params"], "student_input_size": meta["input_size"],
        "student_rules_ok": not info["rule_violations"],
        "score_estimate": competition_score(best.val_f1, info["macs_fvcore"]),
        "selected_student": best.model_file, "submission": str(submission) if submission else None,
        "seconds": {"teacher": teacher.seconds, "teacher_cache_fill": sum(r.cache_fill_seconds for r in kd),
                    "student_kd": [r.seconds for r in kd],
                    "student_ce": [r.seconds for r in ce], "predict": time.time() - t_predict,
                    "total_this_run": time.time() - t0},
        "precision": {"teacher_fine_tune": teacher.precision, "student": sorted({str(r.precision) for r in kd + ce}),
                      "teacher_forward": resolve("auto", "cuda" if torch.cuda.is_available() else "cpu")},
        "machine": machine_info(str((settings or {}).get("precision", "auto"))),
        "command": command,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    if results_json is not None:  # a committed result: files named relative to --out, not this machine's paths
        portable = {**summary, **{k: os.path.relpath(summary[k], out) if summary[k] else None
                                  for k in ("selected_student", "submission")}}
        atomic_write_text(results_json, json.dumps(portable, indent=2))
    return summary


def print_summary(summary: dict[str, Any], out: Path) -> None:
    print("\n==== distill pipeline report ====")
    print(f"teacher val macro F1      : {summary['teacher_f1']:.4f}")
    print(f"student (KD) val macro F1 : {summary['student_kd_f1']:.4f}  per seed {summary['student_kd_f1_per_seed']}")
    if summary["student_ce_f1"] is not None:
        print(f"student (no teacher) F1   : {summary['student_ce_f1']:.4f}  per seed {summary['student_ce_f1_per_seed']}")
    if summary["student_kd_holdout_f1"] is not None:
        print(f"held-out macro F1         : teacher {summary['teacher_holdout_f1']:.4f}, student (KD) "
              f"{summary['student_kd_holdout_f1']:.4f} per seed {_rounded(summary['student_kd_holdout_f1_per_seed'])}")
    if summary["student_ce_holdout_f1"] is not None:
        print(f"held-out, no teacher      : {summary['student_ce_holdout_f1']:.4f} per seed "
              f"{_rounded(summary['student_ce_holdout_f1_per_seed'])}")
    comparison = summary["kd_minus_ce_holdout"]
    if comparison is not None:
        print(f"KD - no teacher, held-out : {100 * comparison['difference']:+.1f} points (mean of "
              f"{len(summary['seeds'])} seed(s); {100 * comparison['level']:.0f}% paired bootstrap interval "
              f"{100 * comparison['low']:+.1f} to {100 * comparison['high']:+.1f} over {comparison['images']} images)")
    print(f"student MACs              : {summary['student_macs']:,} (fvcore), "
          f"{summary['student_macs_competition']:,} (competition counter) at {summary['student_input_size']} px")
    print(f"rules                     : {'ok' if summary['student_rules_ok'] else 'VIOLATED (see report.json)'}")
    print(f"score estimate (val F1)   : {summary['score_estimate']:.4f}  (lower is better)")
    seconds = summary["seconds"]
    print(f"stage seconds             : teacher {seconds['teacher']:.0f}, cache fill {seconds['teacher_cache_fill']:.0f} "
          f"(inside the first KD stage), KD {[round(s) for s in seconds['student_kd']]}, "
          f"no teacher {[round(s) for s in seconds['student_ce']]}")
    print(f"student model             : {summary['selected_student']}")
    print(f"submission                : {summary['submission']}")
    print(f"summary                   : {out / 'summary.json'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="distill pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", metavar="OUT", help="run on the built-in synthetic data set, writing into OUT")
    parser.add_argument("--recipe", help="a shipped recipe name (demo, trashnet, target) or a recipe folder")
    parser.add_argument("--out", type=Path, help="output folder")
    parser.add_argument("--data-root", help="data folder (overrides the recipe's data.root)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--baseline", action="store_true", help="also train the student without a teacher")
    parser.add_argument("--predict-dir", type=Path, help="images to predict (default DATA/test/NoLabel)")
    parser.add_argument("--layout", choices=["csv", "competition"], default="csv")
    parser.add_argument("--teacher-only", action="store_true", help="stop after fine-tuning the teacher")
    parser.add_argument("--results-json", type=Path, help="also write the summary here")
    parser.add_argument("--set", dest="settings", action="append", default=[], type=parse_setting, metavar="KEY=VALUE",
                        help="override for the student stages, e.g. --set trainer.max_epochs=30 (repeatable)")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    command = "distill pipeline " + " ".join(shlex.quote(a) for a in argv)
    if args.demo:
        from distill.demo import make_demo_dataset

        out = Path(args.demo)
        root = out / "data"
        if not (root / "train").is_dir():
            say(f"[pipeline] writing the synthetic demo data set to {root}")
            make_demo_dataset(root, per_class=60, test_images=40, seed=0)
        recipe_name, data_root = args.recipe or "demo", str(root)
    else:
        if args.recipe is None or args.out is None:
            parser.error("give --demo OUT, or --recipe NAME|DIR and --out DIR")
        recipe_name, out, data_root = args.recipe, args.out, args.data_root
    try:
        recipe = Recipe.find(recipe_name)
    except FileNotFoundError as err:
        parser.error(f"--recipe: {err}")
    settings: dict[str, Any] = {}
    for setting in args.settings:
        settings = merge(settings, setting)
    with OutputLock(out, command):
        summary = run_pipeline(recipe, out, data_root, args.seeds, args.baseline, args.predict_dir, args.layout,
                               args.results_json, settings, args.teacher_only, command)
    if args.teacher_only:
        print(f"teacher val macro F1: {summary['teacher_f1']:.4f} ({summary['seconds']['teacher']:.0f} s)")
        return
    print_summary(summary, out)
