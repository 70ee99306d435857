"""Is the teacher-cache fill bound by the teacher? In one run: the teacher's forward passes alone on
ready batches (images/s), measured right before and right after each fill, and the fill of the same
images (views/s: augmentation, optional mixing, the teacher, rendering at the student's size, writing the
memory-mapped files): one process with 0, 1 and 2 loader workers, and two processes of half the threads
each, every share its own (``teacher_cache.processes``); each fill's ratio is to the mean of its two
teacher-alone figures (the teacher on all threads in one process). Every variant runs ``--repeats`` times,
interleaved. Also the disk and RAM the cache takes per image and view.

    python benchmarks/cache_fill.py [--data ROOT] [--images 512] [--views 4] [--size 128] [--mix none] [--repeats 2] [--backends onnxruntime torch]

Writes benchmarks/results/cache_fill.json (fill_vs_teacher: 1.0 = bound by the teacher alone).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import data_root, machine, relative, write_result  # noqa: E402
from distill.models import create_model  # noqa: E402

from distill.cache import MixSpec, ViewCache, fill_share, teacher_forward  # noqa: E402
from distill.cache.fill import export_teacher  # noqa: E402
from distill.cache.parallel import fill_in_processes  # noqa: E402
from distill.data import WasteDataModule, stack_views  # noqa: E402
from distill.teacher import FrozenTeacher  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data")
    parser.add_argument("--images", type=int, default=512, help="training images filled (the first N)")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--size", type=int, default=128, help="base size = the teacher's input size")
    parser.add_argument("--student-size", type=int, default=64)
    parser.add_argument("--mix", default="none")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="runs of every variant, interleaved")
    parser.add_argument("--backends", nargs="+", default=["onnxruntime", "torch"], choices=["onnxruntime", "torch"])
    args = parser.parse_args()
    root = data_root(args.data)
    dm = WasteDataModule(str(root), image_size=args.size, augment="strong")
    dm.samples["train"] = dm.train_samples[: args.images]
    dm.setup("fit")
    dataset = dm.train_set
    teacher = FrozenTeacher(create_model("efficientnet_lite0", dm.num_classes, weights="DEFAULT",
                                         input_size=args.size), "auto")
    images = stack_views([dataset.view(i % len(dataset), i) for i in range(args.batch)])  # as the fill batches them
    rounds = max(1, args.images * args.views // args.batch // 2)

    def teacher_alone(forward) -> float:
        """img/s of the teacher's forward passes alone on one ready batch (no decoding, no augmentation)."""
        start = time.perf_counter()
        for _ in range(rounds):
            forward(images)
        return rounds * args.batch / (time.perf_counter() - start)

    # The teacher alone is measured right before and right after every fill, and each fill is compared with
    # the mean of the two: a machine whose speed drifts (other tenants, clocks) moves both sides of a ratio.
    # Every variant runs --repeats times, interleaved; the summary is each variant's median ratio.
    variants = [(1, 0), (1, 1), (1, 2), (2, 0)]  # (fill processes, loader workers per process)
    teacher_rate: dict[str, list[float]] = {}
    fills: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}
    disk = 0
    with tempfile.TemporaryDirectory() as onnx_dir:
        for backend in args.backends:
            forward, onnx_files = None, None
            for _ in range(args.repeats):
                for processes, workers in variants:
                    with tempfile.TemporaryDirectory() as tmp:
                        cache = ViewCache(teacher, dataset, tmp, args.views, dm.num_classes, args.student_size,
                                          mix=MixSpec(args.mix), backend=backend)
                        cache.create()
                        if forward is None:  # the teacher's forward (and its ONNX export) once per backend
                            onnx_files = export_teacher(cache, onnx_dir) if backend == "onnxruntime" else None
                            forward = teacher_forward(cache, onnx_files)
                            forward(images)  # warm-up
                        before = teacher_alone(forward)
                        start = time.perf_counter()
                        if processes == 1:
                            fill_share(cache, batch_size=args.batch, num_workers=workers, forward=forward)
                            name = f"{backend}, 1 process, {workers} workers"
                        else:
                            fill_in_processes(cache, processes, args.batch, onnx_files)
                            name = f"{backend}, {processes} processes of {torch.get_num_threads() // processes} threads"
                        rate = len(dataset) * args.views / (time.perf_counter() - start)
                        after = teacher_alone(forward)
                        teacher_rate.setdefault(backend, []).extend([before, after])
                        fills.setdefault(name, []).append(rate)
                        ratios.setdefault(name, []).append(rate / ((before + after) / 2))
                        disk = sum(p.stat().st_size for p in Path(tmp).iterdir() if p.suffix == ".npy")
    median = {name: statistics.median(values) for name, values in ratios.items()}
    best = max(median, key=median.get)
    result = {"data": relative(root), "images": len(dataset), "views": args.views, "mix": args.mix,
              "teacher": f"efficientnet_lite0 at {args.size} px", "student_size": args.student_size,
              "machine": machine(f"teacher: torch {teacher.precision}, onnxruntime float32"),
              "repeats": args.repeats, "teacher_images_per_s": teacher_rate, "fill_views_per_s": fills,
              "fill_vs_teacher_each": ratios, "fill_vs_teacher_median": median, "best": best,
              "fill_vs_teacher": median[best],
              "disk_bytes_per_view": disk / (len(dataset) * args.views),
              "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    for name, rates in fills.items():
        print(f"fill, {name}: {', '.join(f'{r:.1f}' for r in rates)} views/s = "
              f"{', '.join(f'{r:.2f}' for r in ratios[name])} x its teacher alone (median {median[name]:.2f})")
    for backend, rates in teacher_rate.items():
        print(f"teacher alone, {backend}: {', '.join(f'{r:.1f}' for r in rates)} img/s (before and after each fill)")
    print(f"disk: {result['disk_bytes_per_view']:.0f} bytes per view; peak RSS {result['max_rss_mib']:.0f} MiB")
    write_result("cache_fill", result)


if __name__ == "__main__":
    main()
