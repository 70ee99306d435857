"""Shared helpers of the benchmark scripts: the data to run on, the machine it ran on, the result file."""
from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TRASHNET = REPO.parent / "shared" / "data" / "trashnet"


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


def relative(path: str | Path) -> str:
    """``path`` relative to the repository (results never record this machine's absolute paths)."""
    return os.path.relpath(Path(path).resolve(), REPO)


def machine(precision: str | None = None) -> dict:
    """CPU model and flags (or GPU), cores, torch threads, precision: recorded beside every figure."""
    from distill.precision import machine_info

    return machine_info(precision)


def command_line() -> str:
    """The command that ran this benchmark, as a user would type it from the repository root (arguments that
    are absolute paths on this machine written relative to the repository)."""
    args = [relative(a) if os.path.isabs(a) and os.path.exists(a) else a for a in sys.argv[1:]]
    return shlex.join(["python", relative(sys.argv[0]), *args])


def seconds_per_call(fn: Callable[[], object], calls: int) -> float:
    """Mean wall time of ``fn()`` over ``calls`` calls after one warm-up call (``torch.utils.benchmark.Timer``, on
    the torch threads this process has)."""
    from torch import get_num_threads
    from torch.utils.benchmark import Timer

    fn()
    return Timer("fn()", globals={"fn": fn}, num_threads=get_num_threads()).timeit(calls).mean


def images_per_s(step: Callable[[], object], batch: int, runs: int = 3) -> float:
    """Throughput of ``step``, which processes ``batch`` images a call (one warm-up call, then ``runs``)."""
    return batch / seconds_per_call(step, runs)


def write_result(name: str, data: dict) -> Path:
    """Write ``benchmarks/results/<name>.json``, with the command that produced it and the library's commit."""
    from distill.summary import library_commit

    data = {**data, "command": command_line(), "commit": library_commit()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    print(f"wrote {path}")
    return path
