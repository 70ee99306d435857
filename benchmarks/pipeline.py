"""Wall time of each stage of the full TrashNet recipe (teacher fine-tune, teacher-cache fill, student
distillation, predict) and the student F1 with the teacher cache vs with the teacher online.

    python benchmarks/pipeline.py --out runs/trashnet --seeds 0 1 2 --uncached-seeds 0 1 2 [--compare-epochs 10]

Reuses finished stages of ``--out`` (each stage records its own wall time when it ran), so it can
follow ``distill pipeline --recipe trashnet --out runs/trashnet ...``.
With the teacher online every epoch runs the teacher on every image: on a CPU a full schedule takes hours.
``--compare-epochs N`` runs the cached-vs-online F1 comparison on an N-epoch schedule instead (both
sides the same N, each seed in its own folder); the stage times stay those of the full recipe.

Writes benchmarks/results/pipeline.json (total_seconds, student_f1_cached, student_f1_uncached).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import data_root, machine, relative, write_result  # noqa: E402

from distill.cache import ViewCache  # noqa: E402
from distill.recipe import Recipe, merge  # noqa: E402
from distill.stages import run_fit, run_predict  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/trashnet"))
    parser.add_argument("--data")
    parser.add_argument("--recipe", default="trashnet", help="shipped recipe name or recipe folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--uncached-seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--compare-epochs", type=int, help="schedule of the cached-vs-online F1 comparison")
    args = parser.parse_args()
    if args.compare_epochs is not None and args.compare_epochs < 1:
        parser.error(f"--compare-epochs must be >= 1, got {args.compare_epochs}")
    recipe = Recipe.find(args.recipe)
    root = str(data_root(args.data))
    data = {"data": {"root": root}}
    teacher = run_fit(recipe.configs("teacher"), args.out / "teacher", data, args.seeds[0])
    common = merge(data, {"model": {"init_args": {"teacher": {"weights": teacher.model_file}}}})
    cache_dir = args.out / "teacher_cache"
    with_cache = merge(common, {"teacher_cache": {"cache_dir": str(cache_dir)}})
    cached = [run_fit(recipe.configs("student"), args.out / f"student_kd/seed_{s}", with_cache, s) for s in args.seeds]
    fill_seconds = max((ViewCache.progress_seconds(p) for p in cache_dir.glob("*.logits.npy")), default=0.0)
    compared = cached
    short, tag = {}, ""
    if args.compare_epochs:
        short, tag = {"trainer": {"max_epochs": args.compare_epochs}}, f"_{args.compare_epochs}ep"
        compared = [run_fit(recipe.configs("student"), args.out / f"student_kd{tag}/seed_{s}",
                            merge(with_cache, short), s) for s in args.uncached_seeds]
    online = merge(merge(common, {"teacher_cache": {"enabled": False}}), short)
    uncached = [run_fit(recipe.configs("student"), args.out / f"student_kd_online{tag}/seed_{s}", online, s)
                for s in args.uncached_seeds]
    predict_dir = Path(root) / "test" / "NoLabel"
    predict_seconds = None
    if predict_dir.is_dir():
        import time

        start = time.time()
        run_predict(cached[0], args.out / "bench_predict", None, "csv")
        predict_seconds = time.time() - start
    # the fill ran inside the first cached student stage: count it once, as its own stage
    kd_seconds = [r.seconds for r in cached]
    kd_first_without_fill = kd_seconds[0] - fill_seconds
    stages = {"teacher_finetune": teacher.seconds, "teacher_cache_fill": fill_seconds,
              "student_kd_cached": kd_first_without_fill, "predict": predict_seconds or 0.0}
    total = sum(stages.values())
    result = {
        "data": relative(root), "machine": machine("auto"), "stages_seconds": stages, "total_seconds": total,
        "student_kd_cached_seconds_per_seed": [kd_first_without_fill] + kd_seconds[1:],
        "student_kd_online_seconds_per_seed": [r.seconds for r in uncached],
        "compare_epochs": args.compare_epochs,
        "student_f1_cached": statistics.fmean(r.val_f1 for r in compared),
        "student_f1_uncached": statistics.fmean(r.val_f1 for r in uncached) if uncached else None,
        "student_f1_cached_per_seed": [r.val_f1 for r in compared],
        "student_f1_uncached_per_seed": [r.val_f1 for r in uncached],
        "student_f1_cached_full_schedule": statistics.fmean(r.val_f1 for r in cached),
        "teacher_f1": teacher.val_f1, "seeds": args.seeds, "uncached_seeds": args.uncached_seeds,
        "note": "total = teacher fine-tune + cache fill + one cached student run + predict (no test/NoLabel in "
                "TrashNet: predict is 0 unless the data has one)"
    }
    for name, seconds in stages.items():
        print(f"{name:<22}{seconds:8.1f} s")
    print(f"{'total':<22}{total:8.1f} s (target <= 1200 s)")
    schedule = f"{args.compare_epochs}-epoch schedule" if args.compare_epochs else "full schedule"
    print(f"student F1 cached   {result['student_f1_cached']:.4f} ({schedule}, seeds "
          f"{args.uncached_seeds if args.compare_epochs else args.seeds})")
    if uncached:
        print(f"student F1 uncached {result['student_f1_uncached']:.4f} ({schedule}, seeds {args.uncached_seeds})")
    write_result("pipeline", result)


if __name__ == "__main__":
    main()
