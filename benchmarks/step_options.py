"""What each option of the student's training step buys: the bare step (forward, KD + focal loss, backward, AdamW)
on one fixed batch, measured side by side in one run, one option changed at a time from ``tiny_rep`` at batch 64
with per-tensor AdamW on 2 threads: the merged-branch form (``tiny_orepa``), fused AdamW, batch 128 and 256, one
thread, and ``torch.compile`` (its compile time reported apart).

    python benchmarks/step_options.py [--steps 40] [--repeats 2]

Writes benchmarks/results/step_options.json (images/s, the better of ``--repeats`` interleaved runs).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import machine, write_result  # noqa: E402

from distill.module import DistillModule  # noqa: E402


@dataclass(frozen=True)
class Step:
    student: str = "tiny_rep"
    batch_size: int = 64
    fused_adamw: bool = False
    threads: int = 2
    compile: bool = False


OPTIONS = {
    "tiny_rep b64 (before)": Step(),
    "tiny_orepa b64": Step("tiny_orepa"),
    "tiny_orepa b64 fused": Step("tiny_orepa", fused_adamw=True),
    "tiny_orepa b128 fused (after)": Step("tiny_orepa", 128, True),
    "tiny_orepa b256 fused": Step("tiny_orepa", 256, True),
    "tiny_orepa b128 fused, 1 thread": Step("tiny_orepa", 128, True, threads=1),
}


def measure(step: Step, steps: int, skip: int = 5) -> tuple[float, float]:
    """(images/s after ``skip`` warm-up steps, seconds of the warm-up steps: compilation when ``step.compile``)."""
    torch.set_num_threads(step.threads)
    torch.manual_seed(0)
    module = DistillModule(6, student=step.student)
    if step.compile:
        module.net = torch.compile(module.net)
    size = 64
    images = torch.randint(0, 256, (step.batch_size, 3, size, size), dtype=torch.uint8)
    labels = torch.randint(0, 6, (step.batch_size,))
    teacher = torch.randn(step.batch_size, 6)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3, fused=step.fused_adamw or None)
    module.train()
    begin = time.perf_counter()
    for i in range(steps + skip):
        if i == skip:
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        module.combine(module(images), labels, teacher)["loss"].backward()
        optimizer.step()
    return step.batch_size * steps / (time.perf_counter() - start), start - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    rates: dict[str, float] = {}
    for _ in range(args.repeats):  # interleaved: the host's speed drifts; the better run of each is kept
        for name, step in OPTIONS.items():
            rates[name] = max(rates.get(name, 0.0), measure(step, args.steps)[0])
    compiled = replace(OPTIONS["tiny_orepa b128 fused (after)"], compile=True)
    try:
        rate, warm_up = measure(compiled, args.steps)
        rates["tiny_orepa b128 fused, torch.compile"] = rate
    except Exception as err:  # noqa: BLE001 - a compiler failure is a result here, not a crash
        rate, warm_up = float("nan"), float("nan")
        print(f"torch.compile failed: {type(err).__name__}: {err}")
    torch.set_num_threads(threads)
    base = rates["tiny_rep b64 (before)"]
    for name, value in rates.items():
        print(f"{name:<40}: {value:8.0f} img/s  {value / base:5.2f}x")
    print(f"torch.compile: {warm_up:.1f} s for the first 5 steps (compilation)")
    write_result("step_options", {"steps": args.steps, "repeats": args.repeats, "options": {
        name: asdict(step) for name, step in OPTIONS.items()}, "images_per_s": rates,
        "vs_before": {name: value / base for name, value in rates.items()},
        "compile_warm_up_seconds": warm_up, "machine": machine()})


if __name__ == "__main__":
    main()
