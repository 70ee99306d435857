"""Where a cache fill's time goes, part by part, measured side by side in one run: the teacher in ONNX Runtime
on 1 and on all threads (img/s, and how it scales), the augmentation of one view (ms), batching views by
transposing each into planes (the old collate) vs ``stack_views``, and the student-size resize through float vs
``resize_uint8``.

    python benchmarks/fill_parts.py [--data ROOT] [--images 256] [--size 128] [--student-size 64]

Writes benchmarks/results/fill_parts.json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from common import data_root, machine, relative, seconds_per_call, write_result  # noqa: E402
from distill.models import create_model  # noqa: E402

from distill.cache import ViewCache, teacher_forward  # noqa: E402
from distill.cache.fill import export_teacher  # noqa: E402
from distill.data import WasteDataModule, stack_views  # noqa: E402
from distill.preprocess import resize_uint8  # noqa: E402
from distill.teacher import FrozenTeacher  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--student-size", type=int, default=64)
    args = parser.parse_args()
    root = data_root(args.data)
    dm = WasteDataModule(str(root), image_size=args.size, augment="strong")
    dm.samples["train"] = dm.train_samples[: args.images]
    dm.setup("fit")
    dataset = dm.train_set
    n = len(dataset)
    views = [dataset.view(i, i) for i in range(64)]
    batch = stack_views(views)
    ms: dict[str, float] = {}
    ms["augment one view"] = 1e3 * seconds_per_call(lambda: [dataset.view(i, i) for i in range(n)], 3) / n
    ms["batch of 64: transpose each view into planes, then stack"] = 1e3 * seconds_per_call(
        lambda: torch.stack([v.contiguous() for v in views]), 20)
    ms["batch of 64: stack_views"] = 1e3 * seconds_per_call(lambda: stack_views(views), 20)
    ms["batch of 64: resize to the student's size through float"] = 1e3 * seconds_per_call(
        lambda: F.interpolate(batch.contiguous().float(), size=(args.student_size,) * 2, mode="bilinear",
                              antialias=True).round().clamp(0, 255).to(torch.uint8), 20)
    ms["batch of 64: resize_uint8"] = 1e3 * seconds_per_call(lambda: resize_uint8(batch, args.student_size), 20)
    teacher = FrozenTeacher(create_model("efficientnet_lite0", dm.num_classes, weights="DEFAULT",
                                         input_size=args.size), "32")
    threads = torch.get_num_threads()
    teacher_rate = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = ViewCache(teacher, dataset, tmp, 1, dm.num_classes, args.student_size, backend="onnxruntime")
        onnx_files = export_teacher(cache, tmp)
        for t in sorted({1, threads}):
            forward = teacher_forward(cache, onnx_files, t)
            teacher_rate[f"{t} thread(s)"] = 64 / seconds_per_call(lambda: forward(batch), 8)
    result = {"data": relative(root), "images": n, "size": args.size, "student_size": args.student_size,
              "machine": machine("onnxruntime float32"), "ms": ms, "teacher_images_per_s": teacher_rate,
              "teacher_ms_per_image_all_threads": 1e3 / teacher_rate[f"{threads} thread(s)"],
              "teacher_scaling": teacher_rate[f"{threads} thread(s)"] / teacher_rate["1 thread(s)"]}
    for name, value in ms.items():
        print(f"{name:<58}: {value:8.3f} ms")
    for name, rate in teacher_rate.items():
        print(f"teacher alone, ONNX Runtime, {name:<29}: {rate:8.1f} img/s")
    print(f"teacher scaling 1 -> {threads} threads: {result['teacher_scaling']:.2f}x")
    write_result("fill_parts", result)


if __name__ == "__main__":
    main()
