"""The teacher fine-tune's training step (forward, label loss, backward, AdamW) in float32 and in bf16 autocast
(Lightning's ``bf16-mixed``), side by side in one run, for each teacher at its native input size; optionally with
the first blocks frozen (no gradients through the stem and early stages).

    python benchmarks/teacher_step.py [--teachers efficientnet_lite0:224 efficientnet_lite2:260] [--batch-size 32]

Writes benchmarks/results/teacher_step.json (images/s per teacher and precision, and bf16 / float32).
Measured with ``torch.utils.benchmark.Timer`` (its ``blocked_autorange``: median of timed blocks).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import machine, write_result  # noqa: E402
from torch.utils.benchmark import Timer  # noqa: E402

from distill.module import Classifier  # noqa: E402


def step_rate(net: str, size: int, batch_size: int, bf16: bool, seconds: float) -> float:
    """Images/s of one training step of ``net`` fine-tuned at ``size`` px."""
    torch.manual_seed(0)
    module = Classifier(6, net=net, input_size=size, weights="DEFAULT")
    module.train()
    images = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8)
    labels = torch.randint(0, 6, (batch_size,))
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4, fused=True)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = module(images)
        loss = module.losses(logits.float(), labels, images, {})["loss"]
        loss.backward()
        optimizer.step()

    step()  # warm-up: allocations, oneDNN primitive creation
    timer = Timer("step()", globals={"step": step}, num_threads=torch.get_num_threads())  # its default is 1 thread
    measurement = timer.blocked_autorange(min_run_time=seconds)
    return batch_size / measurement.median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teachers", nargs="+", default=["efficientnet_lite0:224", "efficientnet_lite2:260"],
                        help="NAME:INPUT_SIZE of each teacher")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per row")
    args = parser.parse_args()
    rows = []
    for teacher in args.teachers:
        name, _, size = teacher.partition(":")
        if not size.isdigit():
            parser.error(f"--teachers {teacher!r}: write NAME:INPUT_SIZE, e.g. efficientnet_lite0:224")
        rates = {precision: step_rate(name, int(size), args.batch_size, precision == "bf16-mixed", args.seconds)
                 for precision in ("32-true", "bf16-mixed")}
        ratio = rates["bf16-mixed"] / rates["32-true"]
        print(f"{name} at {size} px: float32 {rates['32-true']:.1f} img/s, bf16-mixed {rates['bf16-mixed']:.1f} "
              f"img/s ({ratio:.2f}x)")
        rows.append({"teacher": name, "input_size": int(size), "images_per_s": rates, "bf16_vs_float32": ratio})
    write_result("teacher_step", {"batch_size": args.batch_size, "rows": rows, "machine": machine()})


if __name__ == "__main__":
    main()
