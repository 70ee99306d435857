"""The cache fill is inference only: EfficientNet-Lite0 at 224 px, batch 32, in eager PyTorch (float32
and bf16 autocast) vs ONNX Runtime (float32, the ``torch.export``-based ONNX of the same model), side by
side, with how far the logits differ from eager float32.

    python benchmarks/fill_backend.py [--batch 32] [--runs 3]

Writes benchmarks/results/fill_backend.json. The library would adopt ONNX Runtime for the fill only if it
were faster than the eager precision ``auto`` picks here and its logits agreed within 1e-3.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import images_per_s, machine, write_result  # noqa: E402
from distill.models import create_model  # noqa: E402

from distill.precision import choose  # noqa: E402
from distill.preprocess import channels_last  # noqa: E402
from distill.runtime import onnx_session, to_onnx  # noqa: E402

TOLERANCE = 1e-3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = channels_last(create_model("efficientnet_lite0", 6, weights="DEFAULT").eval())
    x = torch.randn(args.batch, 3, 224, 224).contiguous(memory_format=torch.channels_last)

    def eager(bf16: bool):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(x).float()

    reference = eager(False)
    results = {"eager_fp32": images_per_s(lambda: eager(False), args.batch, args.runs),
               "eager_bf16": images_per_s(lambda: eager(True), args.batch, args.runs)}
    diffs = {"eager_fp32": 0.0, "eager_bf16": float((eager(True) - reference).abs().max())}
    with tempfile.TemporaryDirectory() as tmp:
        session = onnx_session(to_onnx(model, Path(tmp) / "teacher.onnx", x[:2].contiguous()))
        feed = {"image": x.contiguous().numpy()}
        results["onnxruntime_fp32"] = images_per_s(lambda: session.run(None, feed), args.batch, args.runs)
        diffs["onnxruntime_fp32"] = float((torch.from_numpy(session.run(None, feed)[0]) - reference).abs().max())
    auto = "eager_bf16" if choose("cpu").teacher == "bf16" else "eager_fp32"
    adopt = results["onnxruntime_fp32"] > results[auto] and diffs["onnxruntime_fp32"] <= TOLERANCE
    for name in results:
        print(f"{name:<18}{results[name]:8.1f} img/s   max |logit - eager fp32| {diffs[name]:.2e}")
    print(f"auto uses {auto}; ONNX Runtime / {auto} = {results['onnxruntime_fp32'] / results[auto]:.2f}x; "
          f"adopt ONNX Runtime for the fill: {adopt}")
    write_result("fill_backend", {"batch": args.batch, "runs": args.runs, "machine": machine("see keys"),
                                  "images_per_s": results, "max_abs_logit_diff_vs_eager_fp32": diffs,
                                  "auto": auto, "onnxruntime_vs_auto": results["onnxruntime_fp32"] / results[auto],
                                  "tolerance": TOLERANCE, "adopt_onnxruntime": adopt})


if __name__ == "__main__":
    main()
