"""What ``distill pipeline`` found: ``Summary`` (its JSON, ``summary.json``, is ``asdict``) and its printed report."""
from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PORTABLE = ("selected_student", "submission", "submitted_student")  # the file paths a committed result writes relative to --out


def portable_command(command: str, cwd: Path | None = None) -> str:
    """``command`` with each absolute path (a word, or the value of ``--opt=PATH``) written relative to ``cwd``
    (default: the working folder): the command as typed from there, naming no path of this machine."""
    base = Path.cwd() if cwd is None else cwd

    def portable(word: str) -> str:
        option, sep, value = word.partition("=") if word.startswith("--") else ("", "", word)
        return option + sep + os.path.relpath(value, base) if value.startswith("/") else word

    return " ".join(shlex.quote(portable(word)) for word in shlex.split(command))


def library_commit() -> str | None:
    """The git commit the library runs from (``git rev-parse HEAD`` in its folder), or None outside a checkout."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _rounded(values: list[float | None]) -> list[float | None]:
    return [None if v is None else round(v, 4) for v in values]


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


@dataclass(frozen=True)
class ArmResult:
    """One arm's seed stages (``distill.stages.StageRecord``, one per seed, in seed order), as a summary reports an
    arm: each figure per seed and its mean. An arm not trained has no runs: empty lists, None means."""

    runs: list[Any]

    def per_seed(self, figure: str) -> list[Any]:
        return [getattr(r, figure) for r in self.runs]

    def mean(self, figure: str) -> float | None:
        return _mean(self.per_seed(figure))

    def files(self, *figures: str) -> list[tuple[Any, ...]]:
        """Per seed, the prediction files named (read as one set of images), for ``compare_files``."""
        return [tuple(getattr(r, f) for f in figures) for r in self.runs]

    def fields(self, arm: str) -> dict[str, Any]:
        """The summary's keys of this arm (``arm``: ``kd`` or ``ce``)."""
        return {f"student_{arm}_f1": self.mean("val_f1"), f"student_{arm}_f1_per_seed": self.per_seed("val_f1"),
                f"student_{arm}_holdout_f1": self.mean("holdout_f1"),
                f"student_{arm}_holdout_f1_per_seed": self.per_seed("holdout_f1"),
                f"student_{arm}_last_holdout_f1_per_seed": self.per_seed("last_holdout_f1"),
                f"student_{arm}_last_val_f1_per_seed": self.per_seed("last_val_f1"),
                f"student_{arm}_train_f1_per_seed": self.per_seed("train_f1")}


def kd_against(kd: ArmResult, ce: ArmResult) -> dict[str, Any]:
    """The summary's comparisons of the KD students with a no-teacher arm (``distill.evaluation.compare_files``): the
    selected and the last-epoch weights on the held-out images, and the last epochs on val + held-out together
    (neither chose those weights: twice the images)."""
    from distill.evaluation import compare_files

    return {"kd_minus_ce_holdout": compare_files(kd.files("holdout_file"), ce.files("holdout_file"),
                                                 "held-out images"),
            "kd_minus_ce_last_holdout": compare_files(kd.files("last_holdout_file"), ce.files("last_holdout_file"),
                                                      "held-out images"),
            "kd_minus_ce_last_unseen": compare_files(kd.files("last_val_file", "last_holdout_file"),
                                                     ce.files("last_val_file", "last_holdout_file"),
                                                     "val and held-out images")}


def against_best(kd: ArmResult, arms: dict[str, ArmResult]) -> dict[str, Any] | None:
    """The KD students (last epochs) against the strongest no-teacher arm, the one of highest mean held-out F1 (chosen on
    the verdict's own images: a choice that can only favour the baseline): the comparison and ``setting``, the arm's
    name; None without a no-teacher arm or held-out predictions."""
    from distill.evaluation import compare_files

    scored = {name: arm for name, arm in arms.items()
              if arm.runs and all(f is not None for f in arm.per_seed("last_holdout_f1"))}
    if not scored:
        return None
    name = max(scored, key=lambda n: scored[n].mean("last_holdout_f1"))
    comparison = compare_files(kd.files("last_holdout_file"), scored[name].files("last_holdout_file"),
                               "held-out images")
    return None if comparison is None else {**comparison, "setting": name}


@dataclass
class TeacherSummary:
    """``distill pipeline --teacher-only``: the teacher fine-tune(s) alone."""

    teacher_f1: float
    teacher_members_f1: list[float]
    teacher_holdout_f1: float | None
    teacher_last_holdout_f1: float | None  # the last epoch's weights (no checkpoint chosen on val)
    seconds: dict[str, float]
    precision: str | None  # the fine-tune's trainer precision
    machine: dict[str, Any]
    command: str = ""

    @classmethod
    def of(cls, teachers: list[Any], command: str = "") -> "TeacherSummary":
        """The summary of the teacher fine-tunes' stage records (``distill.stages.StageRecord``)."""
        from distill.precision import machine_info

        first = teachers[0]
        return cls(first.val_f1, [t.val_f1 for t in teachers], first.holdout_f1, first.last_holdout_f1,
                   {"teacher": sum(t.seconds for t in teachers)}, first.precision, machine_info(), command)

    def to_json(self, relative_to: Path | None = None) -> dict[str, Any]:
        """The summary as JSON data; with ``relative_to``, its command's absolute paths relative to the working folder."""
        data = asdict(self)
        if relative_to is not None:
            data["command"] = portable_command(self.command)
        return data


@dataclass
class Summary:
    """One pipeline run. F1 is macro F1; ``_per_seed`` lists follow ``seeds``; ``kd`` the students taught by the
    teacher, ``ce`` the ones trained without it (``--baseline``; empty lists / None without); ``kd_minus_ce_*``
    are paired bootstrap comparisons (``distill.evaluation.compare_files``) on per-image predictions."""

    teacher_f1: float  # val F1 of the students' teacher (with several, their ensemble)
    teacher_members_f1: list[float]
    teacher_members_holdout_f1: list[float | None]
    student_kd_f1: float | None
    student_ce_f1: float | None
    student_kd_f1_per_seed: list[float]
    student_ce_f1_per_seed: list[float]
    teacher_holdout_f1: float | None
    teacher_last_holdout_f1: float | None  # its last epoch's weights (no checkpoint chosen on val)
    student_kd_holdout_f1: float | None
    student_ce_holdout_f1: float | None
    student_kd_holdout_f1_per_seed: list[float | None]
    student_ce_holdout_f1_per_seed: list[float | None]
    kd_minus_ce_holdout: dict[str, Any] | None
    student_kd_last_holdout_f1_per_seed: list[float | None]
    student_ce_last_holdout_f1_per_seed: list[float | None]
    kd_minus_ce_last_holdout: dict[str, Any] | None
    kd_minus_ce_last_unseen: dict[str, Any] | None  # the last epochs on val + held-out images together
    student_kd_last_val_f1_per_seed: list[float | None]
    student_ce_last_val_f1_per_seed: list[float | None]
    teacher_view_f1: float | None  # on the cached views the students train on
    teacher_offclass_entropy: float | None  # on those views (distill.evaluation.offclass_entropy; 1.0: no similarity)
    student_kd_train_f1_per_seed: list[float | None]
    student_ce_train_f1_per_seed: list[float | None]
    seeds: list[int]
    student_macs: int  # fvcore
    student_macs_competition: int  # the competition's hook counter
    student_params: int
    student_input_size: int
    student_rules_ok: bool
    score_estimate: float  # of the submitted student, from its held-out F1 where there is a held-out split
    score_estimate_from: str  # "held-out" or "val"
    selected_student: str  # the submitted model file (chosen on val F1 among the seeds)
    selected_seed: int
    selected_val_f1: float
    selected_holdout_f1: float | None
    submission: str | None
    seconds: dict[str, Any]
    precision: dict[str, Any]
    machine: dict[str, Any]
    command: str = ""
    baseline_views: str | None = None
    score_estimate_mean: float | None = None  # the score of the KD students' mean held-out F1 over seeds
    # every no-teacher arm (``--baseline``): the recipe's own settings ("same config") and recipe.yaml's ``baselines``
    no_teacher_arms: dict[str, Any] = field(default_factory=dict)
    kd_minus_best_no_teacher: dict[str, Any] | None = None  # last epochs, held-out; ``setting``: the strongest arm
    holdout: dict[str, Any] = field(default_factory=dict)  # the held-out split: data.holdout_fraction and _seed
    stages: dict[str, str | None] = field(default_factory=dict)  # each stage folder's settings fingerprint
    commit: str | None = None  # the library's git commit, where it runs from a checkout
    submitted_student: str | None = None  # the model predict wrote the submission with
    submitted_trained_on: str | None = None  # its training images: the verdict's, or the held-out ones too

    def to_json(self, relative_to: Path | None = None) -> dict[str, Any]:
        """The summary as JSON data; with ``relative_to`` its file paths relative to that folder and the absolute
        paths of its command relative to the working folder (a committed result names no path of this machine)."""
        data = asdict(self)
        if relative_to is not None:
            data.update({k: os.path.relpath(data[k], relative_to) if data[k] else None for k in PORTABLE})
            data["command"] = portable_command(self.command)
        return data

    def report(self, out: Path) -> str:
        """The printed report of the run."""
        lines = ["", "==== distill pipeline report ===="]
        members = self.teacher_members_f1
        lines.append(f"teacher val macro F1      : {self.teacher_f1:.4f}"
                     + (f" (ensemble of {len(members)}; each {_rounded(members)})" if len(members) > 1 else ""))
        lines.append(f"student (KD) val macro F1 : {self.student_kd_f1:.4f}  per seed {_rounded(self.student_kd_f1_per_seed)}")
        if self.student_ce_f1 is not None:
            lines.append(f"student (no teacher) F1   : {self.student_ce_f1:.4f}  per seed "
                         f"{_rounded(self.student_ce_f1_per_seed)}")
        if self.student_kd_holdout_f1 is not None:
            last = self.teacher_last_holdout_f1
            lines.append(f"held-out macro F1         : teacher {self.teacher_holdout_f1:.4f}"
                         + (f" (last epoch {last:.4f})" if last is not None else "") + ", student (KD) "
                         f"{self.student_kd_holdout_f1:.4f} per seed {_rounded(self.student_kd_holdout_f1_per_seed)}")
        if self.student_ce_holdout_f1 is not None:
            lines.append(f"held-out, no teacher      : {self.student_ce_holdout_f1:.4f} per seed "
                         f"{_rounded(self.student_ce_holdout_f1_per_seed)}")
        best = self.kd_minus_best_no_teacher
        for comparison, label in ((self.kd_minus_ce_holdout, "KD - no teacher, held-out "),
                                  (self.kd_minus_ce_last_holdout, "  the same, last epochs   "),
                                  (self.kd_minus_ce_last_unseen, "  last epochs, val+held-out"),
                                  (best, "KD - strongest no teacher ")):
            if comparison is not None:
                lines.append(f"{label}: {100 * comparison['difference']:+.1f} points (mean of {len(self.seeds)} "
                             f"seed(s); {100 * comparison['level']:.0f}% interval "
                             f"{100 * comparison['low']:+.1f} to {100 * comparison['high']:+.1f}, resampling "
                             f"{comparison.get('resampled', 'images')} ({comparison['images']} images))"
                             + (f"; the strongest arm: {comparison['setting']}, last epochs" if comparison is best
                                else ""))
        if self.teacher_view_f1 is not None:
            lines.append(f"F1 on the training views  : teacher {self.teacher_view_f1:.4f} (cached), student (KD) per "
                         f"seed {_rounded(self.student_kd_train_f1_per_seed)}")
        if self.teacher_offclass_entropy is not None:
            lines.append(f"teacher off-class entropy : {self.teacher_offclass_entropy:.3f} on the cached views (1.0: "
                         "it says nothing of the classes it did not pick)")
        lines.append(f"student MACs              : {self.student_macs:,} (fvcore), {self.student_macs_competition:,} "
                     f"(competition counter) at {self.student_input_size} px")
        lines.append(f"rules                     : {'ok' if self.student_rules_ok else 'VIOLATED (see report.json)'}")
        lines.append(f"score estimate            : {self.score_estimate:.4f}  (lower is better; from the submitted "
                     f"student's {self.score_estimate_from} F1; seed {self.selected_seed}, chosen on val F1 "
                     f"{self.selected_val_f1:.4f})")
        if self.score_estimate_mean is not None:
            lines.append(f"score, mean over seeds    : {self.score_estimate_mean:.4f}  (from the mean held-out F1 of "
                         f"the {len(self.seeds)} seed(s))")
        seconds = self.seconds
        lines.append(f"stage seconds             : teacher {seconds['teacher']:.0f}, teacher-output cache "
                     f"{seconds['teacher_cache']:.0f} (fill {seconds['teacher_cache_fill']:.0f}), "
                     f"KD {', '.join(f'{s:.0f}' for s in seconds['student_kd'])}"
                     + (f", no teacher {', '.join(f'{s:.0f}' for s in seconds['student_ce'])}"
                        if seconds["student_ce"] else ""))
        lines.append(f"student model             : {self.selected_student}")
        if self.submitted_student and self.submitted_student != self.selected_student:
            lines.append(f"submitted model           : {self.submitted_student} (seed {self.selected_seed} trained "
                         f"on {self.submitted_trained_on})")
        lines.append(f"submission                : {self.submission}")
        lines.append(f"summary                   : {out / 'summary.json'}")
        return "\n".join(lines)
