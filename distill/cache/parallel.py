"""Filling the cache with several processes on one CPU: each fills its own share of the views (the shares DDP
ranks fill, ``job_share``), running the teacher on its own threads and rendering its own views.

Why: a teacher spread over all cores by one process waits at every layer for its slowest thread, and while
it runs nothing renders the next batch. On 2 cores, two processes of one thread each filled 0.83-1.02 x the
views/s of the teacher alone on 2 threads (median 0.86), one process 0.67-0.87 (median 0.84): ``python
benchmarks/cache_fill.py --backends onnxruntime --repeats 3``, ``benchmarks/results/cache_fill.json``.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from distill.cache.fill import export_teacher, fill_share, teacher_forward
from distill.cache.store import ViewCache
from distill.stopping import StopRequested

_JOB: dict[str, Any] = {}  # what the forked fill processes inherit (the cache is not pickled)


def fill_processes(processes: int | str, device: torch.device | str = "cpu") -> int:
    """How many processes fill: ``auto`` = one per two torch threads on a CPU, at least 1; 1 on any other
    device (its ranks come from the trainer's strategy)."""
    if torch.device(device).type != "cpu":
        return 1
    if processes == "auto":
        threads = torch.get_num_threads()
        return threads if threads <= 2 else threads // 2
    if not isinstance(processes, int) or processes < 1:
        raise ValueError(f"teacher_cache.processes must be an integer >= 1 or 'auto', got {processes!r}")
    return processes


def _fill_rank(rank: int, processes: int, threads: int, batch_size: int) -> None:
    torch.set_num_threads(threads)  # before any torch op in the forked process (its parent's pool is gone)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops the ranks by SIGTERM
    cache: ViewCache = _JOB["cache"]
    forward = teacher_forward(cache, _JOB["onnx_file"], threads)
    fill_share(cache, rank, processes, batch_size, 0, "cpu", forward)  # each process renders its own views


def fill_in_processes(cache: ViewCache, processes: int, batch_size: int = 64, onnx_file: Path | None = None) -> None:
    """Fill ``cache`` (created) with ``processes`` forked CPU processes of ``torch threads // processes``
    threads each (``onnx_file``: the teacher from ``export_teacher``, else exported here). SIGTERM or Ctrl-C
    stops every process after its current batch, each share's progress saved."""
    if processes == 1:
        fill_share(cache, batch_size=batch_size)
        return
    threads = max(1, torch.get_num_threads() // processes)
    with tempfile.TemporaryDirectory() as tmp:
        if onnx_file is None and cache.backend == "onnxruntime":
            onnx_file = export_teacher(cache, tmp)
        _JOB.update(cache=cache, onnx_file=onnx_file)
        pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork"))
        previous = signal.getsignal(signal.SIGTERM)

        def stop_ranks(signum: int, frame: Any) -> None:
            for process in multiprocessing.active_children():  # the pool's processes (forked by this one)
                os.kill(process.pid, signal.SIGTERM)

        try:
            signal.signal(signal.SIGTERM, stop_ranks)
            futures = [pool.submit(_fill_rank, r, processes, threads, batch_size) for r in range(processes)]
            try:
                errors = [f.exception() for f in futures]
            except KeyboardInterrupt:
                stop_ranks(signal.SIGTERM, None)
                for f in futures:
                    f.exception()
                raise
            stops = [e for e in errors if isinstance(e, StopRequested)]
            failures = [e for e in errors if e is not None and not isinstance(e, StopRequested)]
            if failures:
                raise failures[0]
            if stops:
                raise StopRequested(f"stopped by SIGTERM: the cache fill's {processes} processes saved their "
                                    "progress; run the same command again to resume the fill where it stopped")
        finally:
            signal.signal(signal.SIGTERM, previous)
            pool.shutdown()
            _JOB.clear()
