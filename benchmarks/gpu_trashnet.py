"""The TrashNet recipe on a CUDA device: teacher fine-tune, teacher-cache fill and three KD students,
with the wall time of each stage and the students' val macro F1.

    python benchmarks/gpu_trashnet.py --out runs/gpu [--data ../shared/data/trashnet] [--seeds 0 1 2]

Run it on a machine with a GPU (``distill.precision`` picks bf16 there when the GPU supports it). Writes
benchmarks/results/gpu_trashnet.json.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import data_root, machine, relative, write_result  # noqa: E402

from distill.cache import ViewCache  # noqa: E402
from distill.recipe import Recipe, merge  # noqa: E402
from distill.stages import run_fit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/gpu"))
    parser.add_argument("--data")
    parser.add_argument("--recipe", default="trashnet")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=8, help="data loader workers")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("no CUDA device: this benchmark measures the recipe on a GPU")
    recipe = Recipe.find(args.recipe)
    root = str(data_root(args.data))
    gpu = {"trainer": {"accelerator": "gpu", "devices": 1}, "data": {"root": root, "num_workers": args.workers}}
    start = time.time()
    teacher = run_fit(recipe.configs("teacher"), args.out / "teacher", gpu, args.seeds[0])
    settings = merge(gpu, {"model": {"init_args": {"teacher": {"weights": teacher.model_file}}},
                           "teacher_cache": {"cache_dir": str(args.out / "teacher_cache")}})
    students = [run_fit(recipe.configs("student"), args.out / f"student_kd/seed_{s}", settings, s) for s in args.seeds]
    fill = max((ViewCache.progress_seconds(p) for p in (args.out / "teacher_cache").glob("*.logits.npy")), default=0.0)
    stages = {"teacher_finetune": teacher.seconds, "teacher_cache_fill": fill,
              "student_kd_first_without_fill": students[0].seconds - fill,
              "student_kd_other_seeds": [r.seconds for r in students[1:]]}
    result = {"data": relative(root), "machine": machine("auto"), "stages_seconds": stages,
              "total_seconds": time.time() - start, "teacher_f1": teacher.val_f1,
              "student_kd_f1": statistics.fmean(r.val_f1 for r in students),
              "student_kd_f1_per_seed": [r.val_f1 for r in students], "seeds": args.seeds}
    for name, value in stages.items():
        print(f"{name:<32}{value}")
    print(f"teacher F1 {teacher.val_f1:.4f}; student KD F1 {result['student_kd_f1']:.4f} {result['student_kd_f1_per_seed']}")
    write_result("gpu_trashnet", result)


if __name__ == "__main__":
    main()
