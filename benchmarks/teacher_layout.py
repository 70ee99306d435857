"""EfficientNet-Lite0 at 224 on this CPU: images/s of inference and of training steps in the default
(NCHW) layout vs channels-last (what the library uses), plus bf16 autocast (inference: ``teacher_precision:
bf16``; training: ``trainer.precision: bf16-mixed``); side by side.

    python benchmarks/teacher_layout.py [--batch 32]

Writes benchmarks/results/teacher_layout.json (channels_last_vs_default_inference, ..._training).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import machine, write_result  # noqa: E402
from models import create_model  # noqa: E402


def images_per_s(step, batch: int, runs: int = 3) -> float:
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(runs):
        step()
    return runs * batch / (time.perf_counter() - start)


def measure(layout: torch.memory_format, batch: int, bf16: bool = False) -> tuple[float, float]:
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 6).to(memory_format=layout)
    x = torch.randn(batch, 3, 224, 224).contiguous(memory_format=layout)
    model.eval()

    def infer():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x)

    inference = images_per_s(infer, batch)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def train():
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(x).float().sum()
        loss.backward()
        opt.step()

    return inference, images_per_s(train, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    default = measure(torch.contiguous_format, args.batch)
    last = measure(torch.channels_last, args.batch)
    bf16 = measure(torch.channels_last, args.batch, bf16=True)
    result = {"batch": args.batch, "machine": machine(),
              "images_per_s": {"inference_default": default[0], "inference_channels_last": last[0],
                               "inference_channels_last_bf16": bf16[0], "training_default": default[1],
                               "training_channels_last": last[1], "training_channels_last_bf16": bf16[1]},
              "channels_last_vs_default_inference": last[0] / default[0],
              "channels_last_vs_default_training": last[1] / default[1],
              "bf16_vs_fp32_channels_last_inference": bf16[0] / last[0],
              "bf16_vs_fp32_channels_last_training": bf16[1] / last[1],
              "command": "python benchmarks/teacher_layout.py " + " ".join(sys.argv[1:])}
    for key, value in result["images_per_s"].items():
        print(f"{key:<30}{value:8.1f} img/s")
    print(f"channels-last / default: inference {last[0] / default[0]:.2f}x, training {last[1] / default[1]:.2f}x; "
          f"bf16 / fp32 inference {bf16[0] / last[0]:.2f}x, training {bf16[1] / last[1]:.2f}x")
    write_result("teacher_layout", result)


if __name__ == "__main__":
    main()
