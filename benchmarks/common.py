"""Shared helpers of the benchmark scripts."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
TRASHNET = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "trashnet"


def data_root(arg: str | None) -> Path:
    """The data set to benchmark on: the argument, else ../shared/data/trashnet, else the demo data."""
    if arg:
        return Path(arg)
    if (TRASHNET / "train").is_dir():
        return TRASHNET
    from distill.demo import make_demo_dataset

    root = Path("runs/bench-demo-data")
    if not (root / "train").is_dir():
        make_demo_dataset(root, per_class=120, test_images=20)
    return root


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


def write_result(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    print(f"wrote {path}")
    return path
