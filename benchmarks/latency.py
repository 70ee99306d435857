"""Batch-1 CPU latency (median of timed blocks, torch.utils.benchmark.Timer) of the student with and without BN folding,
MobileNetV3-Small at 224, the EfficientNet-Lite0 teacher at 224; then the student (BN-folded) and
MobileNetV3-Small side by side in the deployment runtime, ONNX Runtime (what ``distill export`` writes).

    python benchmarks/latency.py [--student tiny] [--threads 1] [--seconds 1]

Writes benchmarks/results/latency.json (student_vs_mobilenet_v3_small).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torchvision  # noqa: E402
from common import machine, write_result  # noqa: E402
from distill.models import create_model, fuse_bn  # noqa: E402
from torch.utils.benchmark import Timer  # noqa: E402

from distill.complexity import count_macs  # noqa: E402
from distill.runtime import to_onnx  # noqa: E402


def median_ms(fn, seconds: float = 1.0) -> float:
    """Median milliseconds of ``fn()`` (``torch.utils.benchmark.Timer``: timed blocks over about ``seconds``), on the
    torch threads this process has."""
    fn()
    timer = Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())  # its default is 1 thread
    return 1000 * timer.blocked_autorange(min_run_time=seconds).median


def torch_latency(model: torch.nn.Module, size: int, seconds: float) -> float:
    model.eval()
    x = torch.randn(1, 3, size, size)
    with torch.inference_mode():
        return median_ms(lambda: model(x), seconds)


def onnx_latency(model: torch.nn.Module, size: int, seconds: float, threads: int) -> float:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = to_onnx(model.eval(), Path(tmp) / "model.onnx", torch.randn(2, 3, size, size))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        x = torch.randn(1, 3, size, size).numpy()
        name = session.get_inputs()[0].name
        return median_ms(lambda: session.run(None, {name: x}), seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--student", default="tiny")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per row")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    student = create_model(args.student, 9).eval()
    size = student.preprocess.input_size
    fused = fuse_bn(student)
    mnv3 = torchvision.models.mobilenet_v3_small(num_classes=9)
    teacher = create_model("efficientnet_lite0", 9)
    ms = {
        "student": torch_latency(student, size, args.seconds),
        "student_fused": torch_latency(fused, size, args.seconds),
        "mobilenet_v3_small_224": torch_latency(mnv3, 224, args.seconds),
        "efficientnet_lite0_224": torch_latency(teacher, 224, args.seconds),
        "student_fused_onnxruntime": onnx_latency(fused, size, args.seconds, args.threads),
        "mobilenet_v3_small_224_onnxruntime": onnx_latency(mnv3, 224, args.seconds, args.threads),
    }
    macs = {"student": count_macs(student, size).total, "student_fused": count_macs(fused, size).total,
            "mobilenet_v3_small_224": count_macs(mnv3, 224).total, "efficientnet_lite0_224": count_macs(teacher, 224).total}
    for name, value in ms.items():
        print(f"{name:<36}" + ("not installed" if value is None else f"{value:8.3f} ms") +
              (f"   {macs[name]:>13,} MACs" if name in macs else ""))
    ratio = ms["student"] / ms["mobilenet_v3_small_224"]
    same_runtime = {"eager": ratio, "eager_student_fused": ms["student_fused"] / ms["mobilenet_v3_small_224"]}
    if ms["student_fused_onnxruntime"] is not None:
        same_runtime["onnxruntime"] = ms["student_fused_onnxruntime"] / ms["mobilenet_v3_small_224_onnxruntime"]
    print(f"student / MobileNetV3-Small@224 = {ratio:.3f} (target <= 0.1)")
    for name, value in same_runtime.items():
        print(f"  same runtime, {name:<22}{value:.3f}")
    write_result("latency", {"student": f"{args.student} ({size} px)", "threads": args.threads, "seconds_per_row": args.seconds,
                             "median_ms": ms, "macs_fvcore": macs, "student_vs_mobilenet_v3_small": ratio,
                             "student_vs_mobilenet_v3_small_same_runtime": same_runtime,
                             "machine": machine("32")})


if __name__ == "__main__":
    main()
