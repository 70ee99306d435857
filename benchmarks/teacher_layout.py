"""EfficientNet-Lite0 teacher at 224 px, batch 32, on this machine's CPU, side by side: the default
(NCHW) layout vs channels-last (what the library uses), and float32 vs bf16 autocast vs ``auto`` (what
``distill.precision`` picks here), for inference (teacher forwards, cache fill) and training steps
(teacher fine-tune).

    python benchmarks/teacher_layout.py [--batch 32]

Writes benchmarks/results/teacher_layout.json; ``auto_is_fastest`` says whether auto picked the faster.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import images_per_s, machine, write_result  # noqa: E402
from distill.models import create_model  # noqa: E402

from distill.precision import choose  # noqa: E402


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
    choice = choose("cpu")
    default = measure(torch.contiguous_format, args.batch)
    fp32 = measure(torch.channels_last, args.batch)
    bf16 = measure(torch.channels_last, args.batch, bf16=True)
    auto = measure(torch.channels_last, args.batch, bf16=choice.teacher == "bf16")
    rates = {"inference_default_fp32": default[0], "inference_fp32": fp32[0], "inference_bf16": bf16[0],
             "inference_auto": auto[0], "training_default_fp32": default[1], "training_fp32": fp32[1],
             "training_bf16": bf16[1], "training_auto": auto[1]}
    faster = "bf16" if bf16[0] > fp32[0] else "32"
    result = {"batch": args.batch, "machine": machine("fp32, bf16 and auto side by side"),
              "auto_choice": {"teacher": choice.teacher, "trainer": choice.trainer, "reason": choice.reason},
              "images_per_s": rates,
              "channels_last_vs_default_inference": fp32[0] / default[0],
              "channels_last_vs_default_training": fp32[1] / default[1],
              "bf16_vs_fp32_inference": bf16[0] / fp32[0], "bf16_vs_fp32_training": bf16[1] / fp32[1],
              "faster_inference_precision": faster, "auto_is_fastest": choice.teacher == faster}
    for key, value in rates.items():
        print(f"{key:<26}{value:8.1f} img/s")
    print(f"channels-last / default: inference {fp32[0] / default[0]:.2f}x, training {fp32[1] / default[1]:.2f}x")
    print(f"bf16 / fp32: inference {bf16[0] / fp32[0]:.2f}x, training {bf16[1] / fp32[1]:.2f}x")
    print(f"auto = {choice.teacher} ({choice.reason}); faster here: {faster}; auto is the faster: "
          f"{result['auto_is_fastest']}")
    write_result("teacher_layout", result)


if __name__ == "__main__":
    main()
