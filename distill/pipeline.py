"""The whole job in one command: fine-tune the teacher, distil the student, evaluate, write the submission.

    python -m distill.pipeline --demo runs/demo                     # built-in synthetic data, no downloads
    python -m distill.pipeline --recipe recipes/trashnet --out runs/trashnet --seeds 0 1 2 --baseline

Each stage is a run of the ``distill`` CLI (``distill.cli``) with the recipe's YAML. A finished stage
(its ``stage.json`` exists) is reused when the command is run again, so an interrupted pipeline
resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from distill.checkpoint import atomic_write_text, load_trained, save_trained

REPO = Path(__file__).resolve().parents[1]


def _stage_file(run_dir: Path) -> Path:
    return run_dir / "stage.json"


def run_fit(config: Path, run_dir: Path, overrides: list[str], seed: int) -> dict[str, Any]:
    """``distill fit`` into ``run_dir`` (skipped if already finished); returns the stage record."""
    from distill.cli import build_cli

    record_path = _stage_file(run_dir)
    if record_path.exists():
        record = json.loads(record_path.read_text())
        print(f"[pipeline] reusing finished stage {run_dir} (val macro F1 {record['val_f1']:.4f})")
        return record
    checkpoints = run_dir / "checkpoints"
    args = ["fit", "--config", str(config), "--trainer.default_root_dir", str(run_dir),
            "--checkpoint.dirpath", str(checkpoints), "--last_checkpoint.dirpath", str(checkpoints),
            "--seed_everything", str(seed), *overrides]
    if (checkpoints / "last.ckpt").exists():  # an interrupted stage continues from its last finished epoch
        args += ["--ckpt_path", str(checkpoints / "last.ckpt")]
        print(f"[pipeline] resuming {run_dir} from {checkpoints / 'last.ckpt'}")
    print("[pipeline] distill " + " ".join(shlex.quote(a) for a in args), flush=True)
    start = time.time()
    cli = build_cli(args)
    seconds = time.time() - start
    callback = cli.trainer.checkpoint_callback
    best = Path(callback.best_model_path)
    model, meta = load_trained(best)
    exported = save_trained(run_dir / "model.pt", model, meta["model"], meta["num_classes"], meta["class_names"])
    val_f1 = callback.best_model_score if callback.best_model_score is not None else meta["val_f1"]
    record = {"val_f1": float(val_f1), "seconds": seconds, "checkpoint": str(best),
              "config": str(Path(cli.trainer.log_dir) / "config.yaml"), "model_file": str(exported), "seed": seed,
              "input_size": meta["input_size"]}
    atomic_write_text(record_path, json.dumps(record, indent=2))
    return record


def run_predict(stage: dict[str, Any], out_dir: Path, predict_dir: Path | None, layout: str) -> Path | None:
    from distill.cli import build_cli
    from distill.submission import SubmissionWriter

    args = ["predict", "--config", stage["config"], "--ckpt_path", stage["checkpoint"],
            "--submission.out_dir", str(out_dir), "--submission.layout", layout, "--submission.overwrite", "true",
            "--trainer.logger", "false"]
    if predict_dir is not None:
        args += ["--data.predict_dir", str(predict_dir)]
    cli = build_cli(args)
    return next(c.written for c in cli.trainer.callbacks if isinstance(c, SubmissionWriter))


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def run_pipeline(recipe: Path, out: Path, data_root: str | None, seeds: list[int], baseline: bool,
                 predict_dir: Path | None, layout: str = "csv", results_json: Path | None = None,
                 student_overrides: list[str] | None = None, teacher_only: bool = False,
                 command: str = "") -> dict[str, Any]:
    """Teacher fine-tune -> student KD (per seed) [-> student without teacher] -> submission + report."""
    from distill.complexity import competition_score, describe

    import yaml

    data_root = data_root or yaml.safe_load((recipe / "student.yaml").read_text())["data"]["root"]
    data = ["--data.root", data_root]
    extra = list(student_overrides or [])
    t0 = time.time()
    teacher = run_fit(recipe / "teacher.yaml", out / "teacher", data, seeds[0])
    if teacher_only:
        return {"teacher_f1": teacher["val_f1"], "seconds": {"teacher": teacher["seconds"]}}
    teacher_args = ["--model.teacher_weights", teacher["model_file"], "--teacher_cache.cache_dir",
                    str(out / "teacher_cache")]
    kd = [run_fit(recipe / "student.yaml", out / f"student_kd/seed_{s}", data + teacher_args + extra, s) for s in seeds]
    ce = [run_fit(recipe / "student.yaml", out / f"student_ce/seed_{s}", data + ["--model.teacher", "null"] + extra, s)
          for s in seeds] if baseline else []

    best = max(kd, key=lambda r: r["val_f1"])  # one model, selected on the validation split
    student, meta = load_trained(best["model_file"])
    info = describe(student, meta["input_size"])
    predict_dir = predict_dir or Path(data_root) / "test" / "NoLabel"
    submission = None
    t_predict = time.time()
    if predict_dir.is_dir():
        submission = run_predict(best, out, predict_dir, layout)
    else:
        print(f"[pipeline] no prediction folder {predict_dir}: skipping the submission")
    seconds_predict = time.time() - t_predict
    summary = {
        "teacher_f1": teacher["val_f1"],
        "student_kd_f1": _mean([r["val_f1"] for r in kd]),
        "student_ce_f1": _mean([r["val_f1"] for r in ce]),
        "student_kd_f1_per_seed": [r["val_f1"] for r in kd],
        "student_ce_f1_per_seed": [r["val_f1"] for r in ce],
        "seeds": seeds,
        "student_macs": info["macs_fvcore"], "student_macs_competition": info["macs_competition"],
        "student_params": info["params"], "student_input_size": meta["input_size"],
        "student_rules_ok": not info["rule_violations"],
        "score_estimate": competition_score(best["val_f1"], info["macs_fvcore"]),
        "selected_student": best["model_file"], "submission": str(submission) if submission else None,
        "seconds": {"teacher": teacher["seconds"], "student_kd": [r["seconds"] for r in kd],
                    "student_ce": [r["seconds"] for r in ce], "predict": seconds_predict,
                    "total_this_run": time.time() - t0},
        "command": command,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    if results_json is not None:
        atomic_write_text(results_json, json.dumps(summary, indent=2))
    return summary


def print_summary(summary: dict[str, Any], out: Path) -> None:
    print("\n==== distill pipeline report ====")
    print(f"teacher val macro F1      : {summary['teacher_f1']:.4f}")
    print(f"student (KD) val macro F1 : {summary['student_kd_f1']:.4f}  per seed {summary['student_kd_f1_per_seed']}")
    if summary["student_ce_f1"] is not None:
        print(f"student (no teacher) F1   : {summary['student_ce_f1']:.4f}  per seed {summary['student_ce_f1_per_seed']}")
    print(f"student MACs              : {summary['student_macs']:,} (fvcore), "
          f"{summary['student_macs_competition']:,} (competition counter) at {summary['student_input_size']} px")
    print(f"rules                     : {'ok' if summary['student_rules_ok'] else 'VIOLATED (see report.json)'}")
    print(f"score estimate (val F1)   : {summary['score_estimate']:.4f}  (lower is better)")
    print(f"student model             : {summary['selected_student']}")
    print(f"submission                : {summary['submission']}")
    print(f"summary                   : {out / 'summary.json'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", metavar="OUT", help="run on the built-in synthetic data set, writing into OUT")
    parser.add_argument("--recipe", type=Path, help="folder with teacher.yaml and student.yaml")
    parser.add_argument("--out", type=Path, help="output folder")
    parser.add_argument("--data-root", help="data folder (overrides the recipe's data.root)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--baseline", action="store_true", help="also train the student without a teacher")
    parser.add_argument("--predict-dir", type=Path, help="images to predict (default DATA/test/NoLabel)")
    parser.add_argument("--layout", choices=["csv", "competition"], default="csv")
    parser.add_argument("--teacher-only", action="store_true", help="stop after fine-tuning the teacher")
    parser.add_argument("--results-json", type=Path, help="also write the summary here")
    parser.add_argument("--student-arg", action="append", default=[], metavar="OPTION=VALUE",
                        help="extra CLI override for the student stages, e.g. --student-arg=--trainer.max_epochs=5")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    command = "python -m distill.pipeline " + " ".join(shlex.quote(a) for a in argv)
    if args.demo:
        from distill.demo import make_demo_dataset

        out = Path(args.demo)
        root = out / "data"
        if not (root / "train").is_dir():
            print(f"[pipeline] writing the synthetic demo data set to {root}")
            make_demo_dataset(root, per_class=60, test_images=40, seed=0)
        recipe, data_root = args.recipe or REPO / "recipes" / "demo", str(root)
    else:
        if args.recipe is None or args.out is None:
            parser.error("give --demo OUT, or --recipe DIR and --out DIR")
        recipe, out, data_root = args.recipe, args.out, args.data_root
    for name in ("teacher.yaml", "student.yaml"):
        if not (recipe / name).is_file():
            parser.error(f"--recipe {recipe}: {name} not found")
    summary = run_pipeline(recipe, out, data_root, args.seeds, args.baseline, args.predict_dir, args.layout,
                           args.results_json, args.student_arg, args.teacher_only, command)
    if args.teacher_only:
        print(f"teacher val macro F1: {summary['teacher_f1']:.4f} ({summary['seconds']['teacher']:.0f} s)")
        return
    print_summary(summary, out)


if __name__ == "__main__":
    main()
