"""Is the teacher-cache fill bound by the teacher? In one run: the teacher's forward passes alone on
ready batches (images/s), measured right before and right after each fill, and the fill of the same
images (views/s: augmentation, optional mixing, the teacher, rendering at the student's size, writing the
memory-mapped files), with 0, 1 and 2 loader workers; each fill's ratio is to the mean of its two
teacher-alone figures. Also the disk and RAM the cache takes per image and view.

    python benchmarks/cache_fill.py [--data ROOT] [--images 256] [--views 4] [--size 128] [--mix none] [--backends onnxruntime torch]

Writes benchmarks/results/cache_fill.json (fill_vs_teacher: 1.0 = bound by the teacher alone).
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import data_root, machine, relative, write_result  # noqa: E402
from distill.models import create_model  # noqa: E402

from distill.cache import MixSpec, ViewCache, fill_share, teacher_forward  # noqa: E402
from distill.data import WasteDataModule  # noqa: E402
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
    parser.add_argument("--backends", nargs="+", default=["onnxruntime", "torch"], choices=["onnxruntime", "torch"])
    args = parser.parse_args()
    root = data_root(args.data)
    dm = WasteDataModule(str(root), image_size=args.size, augment="strong")
    dm.train_samples = dm.train_samples[: args.images]
    dm.setup("fit")
    dataset = dm.train_set
    teacher = FrozenTeacher(create_model("efficientnet_lite0", dm.num_classes, weights="DEFAULT",
                                         input_size=args.size), "auto")
    images = torch.stack([dataset.view(i % len(dataset), i) for i in range(args.batch)])
    rounds = max(1, args.images * args.views // args.batch // 2)

    def teacher_alone(forward) -> float:
        """img/s of the teacher's forward passes alone on one ready batch (no decoding, no augmentation)."""
        start = time.perf_counter()
        for _ in range(rounds):
            forward(images)
        return rounds * args.batch / (time.perf_counter() - start)

    # The teacher alone is measured right before and right after every fill, and each fill is compared with
    # the mean of the two: a machine whose speed drifts (other tenants, clocks) moves both sides of a ratio.
    teacher_rate: dict[str, list[float]] = {}
    fills, ratios, disk = {}, {}, 0
    for backend in args.backends:
        forward = None
        for workers in (0, 1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                cache = ViewCache(teacher, dataset, tmp, args.views, dm.num_classes, args.student_size,
                                  mix=MixSpec(args.mix), backend=backend)
                cache.create()
                if forward is None:  # the teacher's forward (and its ONNX export) once per backend
                    forward = teacher_forward(cache)
                    forward(images)  # warm-up
                before = teacher_alone(forward)
                start = time.perf_counter()
                fill_share(cache, batch_size=args.batch, num_workers=workers, forward=forward)
                name = f"{backend}, {workers} workers"
                fills[name] = len(dataset) * args.views / (time.perf_counter() - start)
                after = teacher_alone(forward)
                teacher_rate.setdefault(backend, []).extend([before, after])
                ratios[name] = fills[name] / ((before + after) / 2)
                disk = sum(p.stat().st_size for p in Path(tmp).iterdir() if p.suffix == ".npy")
    best = max(fills, key=fills.get)
    result = {"data": relative(root), "images": len(dataset), "views": args.views, "mix": args.mix,
              "teacher": f"efficientnet_lite0 at {args.size} px", "student_size": args.student_size,
              "machine": machine(f"teacher: torch {teacher.precision}, onnxruntime float32"),
              "teacher_images_per_s": teacher_rate, "fill_views_per_s": fills,
              "fill_vs_teacher_each": ratios, "best": best, "fill_vs_teacher": ratios[best],
              "disk_bytes_per_view": disk / (len(dataset) * args.views),
              "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    for name, rate in fills.items():
        print(f"fill, {name}: {rate:.1f} views/s = {ratios[name]:.2f} x its teacher alone")
    for backend, rates in teacher_rate.items():
        print(f"teacher alone, {backend}: {', '.join(f'{r:.1f}' for r in rates)} img/s (before and after each fill)")
    print(f"disk: {result['disk_bytes_per_view']:.0f} bytes per view; peak RSS {result['max_rss_mib']:.0f} MiB")
    write_result("cache_fill", result)


if __name__ == "__main__":
    main()
