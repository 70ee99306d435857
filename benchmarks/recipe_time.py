"""Where a recipe's time goes, stage by stage, run against run: the teacher's fine-tune, the cache fill and each
student stage, with what they gave (the teacher's held-out F1 and its F1 on the cached views, the KD arm's held-out F1
per seed) and the machine; rows of several runs side by side in ``benchmarks/results/recipe_time.json``.

    python benchmarks/recipe_time.py ../runs/trashnet --label before        # a finished pipeline run, as it is
    python benchmarks/recipe_time.py ../runs/fast --label after --run --recipe trashnet --seeds 0 1 2 \\
        --set teacher.trainer.max_epochs=12                                 # run the pipeline first, then record it

Each row reads the run's ``summary.json`` and stage records: a stage's seconds count every run of it (a resumed stage
too, ``distill.callbacks.StageClock``). A row of the same label is replaced. Ratios are against the first row.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, relative, write_result  # noqa: E402

from distill.recipe import Recipe, merge, parse_setting  # noqa: E402
from distill.summary import portable_command  # noqa: E402


def row_of(out: Path, label: str) -> dict:
    """One run's row: seconds per stage and what the stages gave, from ``OUT/summary.json``."""
    summary_file = out / "summary.json"
    if not summary_file.is_file():
        raise SystemExit(f"{summary_file}: no pipeline summary (finish the run, or give --run)")
    summary = json.loads(summary_file.read_text())
    seconds = summary["seconds"]
    students = list(seconds["student_kd"]) + list(seconds["student_ce"])
    stages = {"fine_tune": seconds["teacher"], "fill": seconds["teacher_cache_fill"], "students": students}
    return {"label": label, "run": relative(out), "seconds": {**stages, "total": stages["fine_tune"] + stages["fill"]
                                                            + sum(students)},
            "teacher_holdout_f1": summary["teacher_holdout_f1"], "teacher_view_f1": summary["teacher_view_f1"],
            "kd_last_holdout_f1_per_seed": summary["student_kd_last_holdout_f1_per_seed"],
            "holdout": summary.get("holdout"), "machine": summary["machine"],
            "command": portable_command(summary["command"]),
            "stages": summary.get("stages")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the pipeline run's output folder")
    parser.add_argument("--label", required=True, help="the row's name (e.g. before, after)")
    parser.add_argument("--run", action="store_true", help="run the pipeline into OUT first (finished stages reused)")
    parser.add_argument("--recipe", default="trashnet")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--baseline", action="store_true", help="with --run: the no-teacher arms too")
    parser.add_argument("--set", dest="settings", action="append", default=[], type=parse_setting, metavar="KEY=VALUE")
    args = parser.parse_args()
    if args.run:
        from distill.pipeline import run_pipeline

        settings: dict = {}
        for setting in args.settings:
            settings = merge(settings, setting)
        run_pipeline(Recipe.find(args.recipe), args.out, None, args.seeds, args.baseline, None, settings=settings,
                     command=" ".join(sys.argv), baseline_views="cached")
    previous = RESULTS / "recipe_time.json"
    rows = json.loads(previous.read_text())["rows"] if previous.is_file() else []
    rows = [r for r in rows if r["label"] != args.label] + [row_of(args.out, args.label)]
    first = rows[0]["seconds"]
    print(f"{'row':24s} {'fine-tune':>10s} {'fill':>8s} {'students':>9s} {'total':>8s}  teacher F1  KD F1 per seed")
    for r in rows:
        s = r["seconds"]
        kd = " / ".join(f"{f:.3f}" for f in r["kd_last_holdout_f1_per_seed"] if f is not None)
        print(f"{r['label']:24s} {s['fine_tune']:10.0f} {s['fill']:8.0f} {sum(s['students']):9.0f} {s['total']:8.0f}"
              f"  {r['teacher_holdout_f1'] or 0:.3f}       {kd}   (x{first['total'] / s['total']:.2f} the first row)")
    write_result("recipe_time", {"rows": rows})


if __name__ == "__main__":
    main()
