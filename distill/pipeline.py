"""The whole job in one command: fine-tune the teacher, distil the student, evaluate, write the submission.

    distill pipeline --demo runs/demo                       # built-in synthetic data, no downloads
    distill pipeline --recipe trashnet --out runs/trashnet --seeds 0 1 2 --baseline
    distill pipeline --recipe trashnet --out runs/x --set trainer.max_epochs=30 --set teacher_cache.views=64
    distill pipeline --recipe trashnet --out runs/short --set teacher.trainer.max_epochs=1 --set trainer.max_epochs=2

Each stage is a ``fit`` of the Lightning CLI (``distill.cli``) built from the recipe's configs (the
shipped ``base`` first, then the recipe's own, ``distill.recipe``) plus a dict of overrides; the stage runners
are ``distill.stages``. A finished stage (its ``stage.json``) is reused when the command runs again; an
interrupted one resumes from its ``last.ckpt``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.console import say
from distill.recipe import Recipe, merge, split_settings
from distill.summary import ArmResult, Summary, TeacherSummary, against_best, kd_against, library_commit

HOLDOUT_KEYS = ("holdout_fraction", "holdout_seed")
SAME_CONFIG = "same config"  # the no-teacher arm of the recipe's own student settings, the teacher taken away


class OutputLock:
    """An exclusive lock on an output folder for one pipeline at a time (``fcntl.flock`` on ``.distill.lock``:
    released by the kernel when the holder exits, however it exits). A second run says who holds it. A folder the
    lock created is removed again if the run left nothing else in it (a setting refused before any stage ran)."""

    def __init__(self, out: Path, command: str = ""):
        self.path, self.command, self.handle = Path(out) / ".distill.lock", command, None
        self.created = False

    def __enter__(self) -> "OutputLock":
        import fcntl

        self.created = not self.path.parent.exists()
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
        if self.handle is None:
            return
        folder = self.path.parent
        empty = self.created and [p.name for p in folder.iterdir()] == [self.path.name]
        if empty:
            self.path.unlink()  # while still held: no other run can have opened it
        self.handle.truncate(0)
        self.handle.close()  # closing releases the lock
        if empty:
            with contextlib.suppress(OSError):  # a run started meanwhile has written into it: it stays
                folder.rmdir()


class OutputInUseError(RuntimeError):
    """The output folder is locked by another running pipeline."""


@dataclass(frozen=True)
class RunSettings:
    """What each stage of a run is given: overrides of the recipe's config files, composed from ``--set``."""

    teachers: list[dict[str, Any]]  # one per teacher fine-tune, holding out the students' held-out images
    teacher_dirs: list[Path]
    students: dict[str, Any]  # the KD students: the fine-tuned teacher's weights and the cache folder set
    no_teacher: dict[str, dict[str, Any]]  # each no-teacher arm (``--baseline``) by name, in training order
    baselines: dict[str, dict[str, Any]]  # recipe.yaml's named arms, their overrides as written
    holdout: dict[str, Any]  # data.holdout_fraction / holdout_seed of the students
    precision: str  # the students' ``precision`` setting
    out: Path
    # the submitted student's second training, on every labelled image the recipe trains on (held-out ones too), with
    # its own cache of the teacher's outputs on them; None without a held-out split, for a prune recipe, or when off
    final: dict[str, Any] | None = None


def compose(recipe: Recipe, out: Path, data_root: str, settings: dict[str, Any], baseline: bool,
            baseline_views: str, final: bool = False) -> RunSettings:
    """Every stage's overrides: ``--set`` keys under ``teacher`` for the fine-tune(s), the others for the students;
    ``final``: the submitted student trained once more with the held-out images (``RunSettings.final``)."""
    data = {"data": {"root": data_root}}
    teacher_overrides, student_overrides = split_settings(settings)
    student_settings = merge(data, student_overrides)
    # the teacher holds out exactly the images the students hold out (never trained on by any stage)
    student_data = merge(recipe.data(), student_settings["data"])
    holdout = {k: student_data[k] for k in HOLDOUT_KEYS if k in student_data}
    # one fine-tune per teacher of the recipe (its own overrides, then --set, then the held-out images)
    teachers = [merge(merge(merge(data, member), teacher_overrides), {"data": holdout})
                for member in recipe.teachers()]
    teacher_dirs = [out / ("teacher" if i == 0 else f"teacher_{i + 1}") for i in range(len(teachers))]
    students = merge(student_settings, {
        "model": {"init_args": {"teacher": {"weights": teacher_weights([d / "model.pt" for d in teacher_dirs])}}},
        "teacher_cache": {"cache_dir": str(out / "teacher_cache")}})
    baselines = recipe.baselines() if baseline else {}
    without = no_teacher(students, student_settings, baseline_views)
    arms = {name: merge(without, overrides) for name, overrides in arm_overrides(baselines, baseline).items()}
    held = {"fraction": holdout.get("holdout_fraction", 0.0), "seed": holdout.get("holdout_seed", 0)}
    everything = merge(students, {"data": {"holdout_fraction": 0.0},
                                  "teacher_cache": {"cache_dir": str(out / "teacher_cache_final")}})
    return RunSettings(teachers, teacher_dirs, students, arms, baselines, held,
                       str(student_overrides.get("precision", "auto")), out,
                       everything if final and held["fraction"] > 0 and recipe.prune() is None else None)


def run_pipeline(recipe: Recipe, out: Path, data_root: str | None, seeds: list[int], baseline: bool,
                 predict_dir: Path | None, layout: str = "csv", results_json: Path | None = None,
                 settings: dict[str, Any] | None = None, teacher_only: bool = False,
                 command: str = "", baseline_views: str = "fresh", teacher_seed: int = 0,
                 final: bool = False) -> Summary | TeacherSummary:
    """Teacher fine-tune -> student KD (per seed) [-> students without teacher] -> submission + report.

    ``settings``: overrides (nested dict, as ``--set`` gives): for the student stages, except those under
    ``teacher`` (for the teacher's fine-tune). ``baseline_views``: the students without a teacher train on
    ``fresh`` augmented views (``teacher: null``) or replay the teacher cache's ``cached`` views with their labels
    alone (``distill_weight: 0``: the teacher's logits are never read; no augmentation during its epochs).
    ``teacher_seed``: the seed of the teacher's fine-tune and of its cache, whichever student ``seeds`` are asked for
    (a run given more seeds later reuses both). ``final``: after the verdict, train the submitted student (the seed val
    chose, its settings) once more on the held-out images too, and submit that one (``distill pipeline``'s default);
    the verdict's figures stay those of the held-out runs."""
    from distill.stage_checks import check_stages
    from distill.stages import run_cache, run_ensemble_eval, run_fit, student_stage

    data_root = data_root or recipe.data_root()
    run = compose(recipe, out, data_root, settings or {}, baseline, baseline_views, final)
    checked = check_stages(recipe, run.teachers, run.students, run.no_teacher)  # a typo fails now, not after hours
    progress = plan_run(out, data_root, checked, [] if teacher_only else seeds, run.final is not None)
    start = time.time()
    teachers = [progress.finished(folder.name, run_fit(recipe.configs("teacher"), folder, settings, teacher_seed))
                for folder, settings in zip(run.teacher_dirs, run.teachers)]
    if teacher_only:
        return write_summary(TeacherSummary.of(teachers, command), out, results_json)
    cache = progress.finished("teacher_cache",  # its own stage, before any student
                              run_cache(recipe.configs("student"), run.students, teacher_seed))
    teacher = teachers[0] if len(teachers) == 1 else run_ensemble_eval(  # an ensemble, scored as its members were
        recipe.configs("student"), run.students, out / "teacher_ensemble", teachers)
    kd = ArmResult([progress.finished(f"student_kd/seed_{s}", student_stage(recipe, out, run.students, s))
                    for s in seeds])
    arms = {name: ArmResult([progress.finished(f"{arm_folder(name)}/seed_{s}", run_fit(
        recipe.configs("student"), out / arm_folder(name) / f"seed_{s}", settings, s)) for s in seeds])
        for name, settings in run.no_teacher.items()}
    chosen = max(kd.runs, key=lambda r: r.val_f1)  # one model, selected on the validation split
    last = train_final(recipe, run, chosen.seed, teacher_seed, progress) if run.final is not None else None
    submitted = submit(chosen, last, out, data_root, predict_dir, layout)
    summary = summarize(run, teachers, teacher, cache, kd, arms, submitted, seeds,
                        {"command": command, "baseline_views": baseline_views if baseline else None}, start)
    return write_summary(summary, out, results_json)


def train_final(recipe: Recipe, run: RunSettings, seed: int, teacher_seed: int, progress: Any) -> Any:
    """The submitted student once more, the chosen ``seed`` and settings, on every image the recipe trains on with the
    held-out ones added, taught from a cache of the teacher's outputs on all of them (the teacher itself never saw the
    held-out images); its stage record."""
    from distill.stages import run_cache, run_fit

    progress.finished("teacher_cache_final", run_cache(recipe.configs("student"), run.final, teacher_seed))
    return progress.finished("student_final", run_fit(recipe.configs("student"), run.out / "student_final" /
                                                      f"seed_{seed}", run.final, seed))


@dataclass(frozen=True)
class Submitted:
    """The one model a run submits and what predict wrote: the KD seed val chose (``chosen``), or its second training
    on the held-out images too (``record`` then differs from ``chosen``)."""

    chosen: Any  # the verdict's StageRecord of the seed val chose
    record: Any  # the StageRecord of the model predicted with
    info: dict[str, Any]  # distill.competition.describe: MACs of both counters, params, rule violations
    input_size: int
    submission: Path | None
    seconds: float


def submit(chosen: Any, final: Any, out: Path, data_root: str, predict_dir: Path | None, layout: str) -> Submitted:
    """Predict ``data_root``'s ``test/NoLabel`` (or ``predict_dir``) with ``final`` where there is one (the chosen seed
    trained on the held-out images too), else with ``chosen``."""
    from distill.checkpoint import load_trained
    from distill.competition import describe
    from distill.stages import run_predict

    record = final or chosen
    student, meta = load_trained(record.model_file)
    folder = predict_dir or Path(data_root) / "test" / "NoLabel"
    start, submission = time.time(), None
    if folder.is_dir():
        submission = run_predict(record, out, folder, layout, data_root)
    else:
        say(f"[pipeline] no prediction folder {folder}: skipping the submission")
    return Submitted(chosen, record, describe(student, meta["input_size"]), meta["input_size"], submission,
                     time.time() - start)


def summarize(run: RunSettings, teachers: list[Any], teacher: Any, cache: Any, kd: ArmResult,
              arms: dict[str, ArmResult], submitted: Submitted, seeds: list[int], how: dict[str, Any],
              start: float) -> Summary:
    """What the run found (``Summary``): the teacher(s), each arm, the comparisons, the submitted model, the costs."""
    import torch

    from distill.competition import competition_score
    from distill.precision import machine_info, resolve

    best, info = submitted.chosen, submitted.info
    macs = info["macs_fvcore"]
    ce = arms.get(SAME_CONFIG, ArmResult([]))
    mean_kd = kd.mean("holdout_f1")  # the mean seed's score: what the recipe scores whichever seed a user runs
    return Summary(
        teacher_f1=teacher.val_f1,  # the students' teacher: with several, their ensemble
        teacher_members_f1=[t.val_f1 for t in teachers], teacher_members_holdout_f1=[t.holdout_f1 for t in teachers],
        teacher_holdout_f1=teacher.holdout_f1, teacher_last_holdout_f1=teacher.last_holdout_f1,
        **kd.fields("kd"), **ce.fields("ce"), **kd_against(kd, ce),
        teacher_view_f1=cache.teacher_view_f1 if cache else None,  # on the cached views the students train on
        teacher_offclass_entropy=cache.teacher_offclass_entropy if cache else None,
        seeds=seeds, student_macs=macs, student_macs_competition=info["macs_competition"],
        student_params=info["params"], student_input_size=submitted.input_size,
        student_rules_ok=not info["rule_violations"],
        # val chose the submitted seed, so its val F1 is the best of len(seeds): the held-out F1 (no stage chose on
        # it) estimates the score when there is a held-out split
        score_estimate=competition_score(best.val_f1 if best.holdout_f1 is None else best.holdout_f1, macs),
        score_estimate_from="held-out" if best.holdout_f1 is not None else "val",
        selected_student=best.model_file, selected_seed=best.seed, selected_val_f1=best.val_f1,
        selected_holdout_f1=best.holdout_f1,
        submission=str(submitted.submission) if submitted.submission else None,
        submitted_student=submitted.record.model_file,
        submitted_trained_on=("every labelled image the recipe trains on, the held-out ones too" if submitted.record
                              is not best else "the verdict's training images (the held-out ones left out)"),
        seconds={"teacher": sum(t.seconds for t in teachers),
                 "teacher_cache": cache.seconds if cache else 0.0,  # the stage: decoding, key, fill
                 "teacher_cache_fill": (cache.fill_seconds if cache else 0.0) + sum(kd.per_seed("cache_fill_seconds")),
                 "student_kd": kd.per_seed("seconds"), "student_ce": ce.per_seed("seconds"),
                 "predict": submitted.seconds, "total_this_run": time.time() - start},
        precision={"teacher_fine_tune": teacher.precision,
                   "student": sorted({str(r.precision) for r in kd.runs + ce.runs}),
                   "teacher_forward": resolve("auto", "cuda" if torch.cuda.is_available() else "cpu")},
        machine=machine_info(run.precision), **how,
        score_estimate_mean=competition_score(mean_kd, macs) if mean_kd is not None else None,
        no_teacher_arms={name: arm_summary(name, run.baselines.get(name, {}), arm) for name, arm in arms.items()},
        kd_minus_best_no_teacher=against_best(kd, arms), holdout=run.holdout,
        stages={Path(os.path.relpath(r.model_file, run.out)).parent.as_posix(): r.fingerprint
                for r in [*teachers, *kd.runs, *(r for arm in arms.values() for r in arm.runs), submitted.record]
                if r.model_file},
        commit=library_commit())


def write_summary(summary: Summary | TeacherSummary, out: Path, results_json: Path | None) -> Summary | TeacherSummary:
    """``OUT/summary.json`` (``teacher_summary.json`` for a teacher-only run), and ``results_json`` where given: a
    committed result, its files named relative to ``out``, not this machine's paths."""
    from distill.checkpoint import atomic_write_text

    name = "teacher_summary.json" if isinstance(summary, TeacherSummary) else "summary.json"
    atomic_write_text(out / name, json.dumps(summary.to_json(), indent=2))
    if results_json is not None:
        atomic_write_text(results_json, json.dumps(summary.to_json(relative_to=out), indent=2))
    return summary


def plan_run(out: Path, data_root: str, checked: Any, seeds: list[int], final: bool = False) -> Any:
    """The run's plan (``distill.run_estimate``), said before its first stage: the teacher fine-tune(s), and with
    ``seeds`` the cache fill, the KD students, every no-teacher arm and, with ``final``, the submitted student's second
    cache and training; stages finished in ``out`` cost nothing (the final one's seed is known after the verdict)."""
    import copy

    from distill.run_estimate import RunProgress, estimate_run

    students = {f"student_kd/seed_{s}": checked.student for s in seeds}
    students.update({f"{arm_folder(name)}/seed_{s}": config for name, config in checked.baselines.items()
                     for s in seeds})
    names = ["teacher", *(f"teacher_{i + 1}" for i in range(1, len(checked.teachers))), "teacher_cache", *students]
    finished = {name for name in names if (out / name / "stage.json").is_file()}
    everything = None
    if final and seeds:
        everything = copy.deepcopy(checked.student)
        everything.data.holdout_fraction = 0.0
        if any((out / "student_final").glob("seed_*/stage.json")):
            finished |= {"teacher_cache_final", "student_final"}
        elif (out / "teacher_cache_final" / "stage.json").is_file():
            finished.add("teacher_cache_final")
    return RunProgress(estimate_run(data_root, checked.teachers, students if seeds else {}, finished, out, everything))


def no_teacher(with_teacher: dict[str, Any], student_settings: dict[str, Any], views: str) -> dict[str, Any]:
    """The student settings without a teacher: on ``fresh`` augmented views (``teacher: null``) or replaying the
    teacher cache's ``cached`` views with their labels alone (the KD settings, cache included, ``distill_weight: 0``:
    the teacher's logits are never read)."""
    if views == "cached":
        return merge(with_teacher, {"model": {"init_args": {"distill_weight": 0.0}}})
    return merge(student_settings, {"model": {"init_args": {"teacher": None}}})


def arm_overrides(baselines: dict[str, dict[str, Any]], baseline: bool) -> dict[str, dict[str, Any]]:
    """The no-teacher arms ``--baseline`` trains, in order, each with its overrides of the no-teacher settings: the
    recipe's named ``baselines`` first (the strongest settings, the verdict's comparison), then its own settings
    without the teacher (``SAME_CONFIG``)."""
    return {**baselines, SAME_CONFIG: {}} if baseline else {}


def arm_folder(name: str) -> str:
    """The folder of a no-teacher arm's seed stages: ``student_ce`` for the recipe's own settings, else
    ``student_ce_<name>``."""
    return "student_ce" if name == SAME_CONFIG else f"student_ce_{name}"


def arm_summary(name: str, overrides: dict[str, Any], arm: ArmResult) -> dict[str, Any]:
    """One no-teacher arm in ``summary.json``: its folder, its overrides as dotted keys, its held-out F1s."""
    from distill.fingerprint import flatten

    return {"folder": arm_folder(name), "settings": flatten(overrides),
            "last_holdout_f1_per_seed": arm.per_seed("last_holdout_f1"), "last_holdout_f1": arm.mean("last_holdout_f1")}


def teacher_weights(files: list[Path | str]) -> str | list[str]:
    """``teacher.weights`` for the teacher fine-tunes' files: one file, or a list (an ensemble)."""
    return str(files[0]) if len(files) == 1 else [str(f) for f in files]


def check_data_root(root: str | None) -> None:
    """The data root's layout (``ROOT/train/<Class>/``...), checked before the output folder is made."""
    from distill.layout import read_layout

    where_from = "give --data-root DIR or set data.root in the recipe's student.yaml"
    if root is None:
        raise ValueError(f"no data root: {where_from}")
    try:
        read_layout(root)
    except FileNotFoundError as err:  # e.g. a shipped recipe's placeholder root: say where the root comes from
        raise FileNotFoundError(f"{err}; {where_from}") from None


def run(args: argparse.Namespace) -> None:
    """``distill pipeline`` (arguments: ``distill.command_args.pipeline_parser``; ``args.argv`` what was typed)."""
    command = "distill pipeline " + " ".join(shlex.quote(a) for a in args.argv)
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
            raise ValueError("give --demo OUT, or --recipe NAME|DIR and --out DIR")
        recipe_name, out, data_root = args.recipe, args.out, args.data_root
    try:
        recipe = Recipe.find(recipe_name)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"--recipe: {err}") from None
    settings: dict[str, Any] = {}
    for setting in args.settings:
        settings = merge(settings, setting)
    say(f"[pipeline] recipe {recipe.folder}" + (f" (extends {recipe.parent.folder})" if recipe.parent else ""))
    check_data_root(data_root or recipe.data_root())  # before anything is written into --out
    with OutputLock(out, command):
        summary = run_pipeline(recipe, out, data_root, args.seeds, args.baseline, args.predict_dir, args.layout,
                               args.results_json, settings, args.teacher_only, command, args.baseline_views,
                               args.teacher_seed, args.final)
    if isinstance(summary, TeacherSummary):
        print(f"teacher val macro F1: {summary.teacher_f1:.4f} ({summary.seconds['teacher']:.0f} s)")
        return
    print(summary.report(out))
