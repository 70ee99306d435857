"""``auto`` precision: bfloat16 only where it is fast *and* harmless, float32 elsewhere.

The rule:

* **The frozen teacher's forward passes** (online, and the teacher-output cache fill) run in bf16 autocast
  on a CUDA device that supports bf16 and on a CPU with native bf16 instructions (AVX512-BF16 or AMX, as
  ``torch.cpu`` reports them); in float32 elsewhere. On a CPU without them (AVX2, or AVX512 without BF16)
  PyTorch emulates bf16 and autocast runs several times *slower* than float32.
* **Training on a CPU** (the student, and the teacher's fine-tune) is always float32 (``32-true``): CPU autocast
  runs softmax / log_softmax / exp / pow of the KD and focal losses on bf16 logits, whose 8 significant bits round
  logits of size 4-16 in steps as large as the distillation signal near convergence, and the speed bf16 buys for a
  student this small is small too (what it cost a student: ``benchmarks/results/engineering.md``).
* **Training on a CUDA device**: bf16-mixed where supported, else fp16 mixed (``16-mixed``).

Forcing ``precision: bf16`` or ``trainer.precision`` still works.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni", "avx_vnni")


@dataclass(frozen=True)
class Choice:
    """A resolved precision and why it was chosen."""

    teacher: str  # "bf16" or "32": autocast for the frozen teacher's forward passes
    trainer: str  # Lightning's Trainer(precision=...): what the trained network (student or teacher) uses
    reason: str


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX tiles, as torch reports them (False where torch cannot tell)."""
    cpu = torch.cpu
    try:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch, or not x86
        return False


def choose(device_type: str) -> Choice:
    """The ``auto`` choice for a device type (``cpu`` or ``cuda``)."""
    if device_type == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return Choice("bf16", "bf16-mixed", f"CUDA device {torch.cuda.get_device_name()} supports bf16")
        return Choice("32", "16-mixed", "CUDA device without bf16: fp16 mixed precision for training")
    if cpu_has_native_bf16():
        return Choice("bf16", "32-true", "CPU with native bf16 (AVX512-BF16/AMX): bf16 for the frozen teacher's "
                                         "forward passes, float32 for training (bf16-mixed costs a tiny student "
                                         "its accuracy)")
    return Choice("32", "32-true", "CPU without native bf16 instructions: bf16 would be emulated and slower; "
                                   "float32 everywhere")


def resolve(precision: str, device_type: str) -> str:
    """A teacher precision (``32``, ``bf16`` or ``auto``) resolved for ``device_type``."""
    return choose(device_type).teacher if precision == "auto" else precision


def cpu_info() -> dict:
    """CPU model and the instruction-set flags that decide float32 vs bf16 speed (from /proc/cpuinfo)."""
    info = {"model": platform.processor() or platform.machine(), "flags": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            info["model"] = value.strip()
        elif key.strip() == "flags":
            info["flags"] = [f for f in CPU_FLAGS if f in set(value.split())]
            break
    return info


def machine_info(precision: str | None = None) -> dict:
    """What a timing depends on: CPU model and flags (or GPU), cores, torch threads, precision used."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return {"cpu": cpu_info(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if device == "cuda" else None, "torch": torch.__version__,
            "precision": precision, "auto_precision": choose(device).trainer}
