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
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch

from distill.cache.fill import export_teacher, fill_share, say_estimate, teacher_forward
from distill.cache.store import ViewCache, _Progress, complete, job_share
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
    counter = _JOB["counter"]
    forward = teacher_forward(cache, _JOB["onnx_files"], threads)

    def report(views: int) -> None:  # into the parent's one progress bar
        with counter.get_lock():
            counter.value += views

    fill_share(cache, rank, processes, batch_size, 0, "cpu", forward, report)  # each process renders its own views


def _watch(futures: list, counter: Any, cache: ViewCache, processes: int, batch_size: int) -> None:
    """One progress bar and one estimate for every filling process, until all of them have returned."""
    from tqdm.auto import tqdm

    total = cache.n * cache.views
    array = cache.logits_file if not complete(cache.logits_file, total) else cache.views_file
    done = sum(_Progress(array, r, *job_share(total, r, processes)).done - job_share(total, r, processes)[0]
               for r in range(processes))
    what = (f"teacher outputs ({cache.views} views/image, {processes} processes)" if array == cache.logits_file
            else f"rendering views at {cache.size}px ({processes} processes)")
    start, estimated = time.time(), False
    with tqdm(total=total, initial=done, desc=what, unit="view",
              dynamic_ncols=True) as bar:
        while True:
            finished, _ = wait(futures, timeout=0.5, return_when=FIRST_EXCEPTION)
            bar.update(counter.value - (bar.n - done))
            if not estimated and counter.value >= 4 * batch_size * processes:
                say_estimate(what, counter.value / (time.time() - start), total - bar.n)
                estimated = True
            if len(finished) == len(futures) or any(f.exception() is not None for f in finished):
                return


def fill_in_processes(cache: ViewCache, processes: int, batch_size: int = 64,
                      onnx_files: list[Path] | None = None) -> None:
    """Fill ``cache`` (created) with ``processes`` forked CPU processes of ``torch threads // processes``
    threads each (``onnx_files``: the teacher from ``export_teacher``, else exported here). SIGTERM or Ctrl-C
    stops every process after its current batch, each share's progress saved."""
    if processes == 1:
        fill_share(cache, batch_size=batch_size)
        return
    threads = max(1, torch.get_num_threads() // processes)
    with tempfile.TemporaryDirectory() as tmp:
        if onnx_files is None and cache.backend == "onnxruntime":
            onnx_files = export_teacher(cache, tmp)
        context = multiprocessing.get_context("fork")
        counter = context.Value("q", 0)  # views filled, summed over the processes (they inherit it by fork)
        _JOB.update(cache=cache, onnx_files=onnx_files, counter=counter)
        pool = ProcessPoolExecutor(processes, mp_context=context)
        previous = signal.getsignal(signal.SIGTERM)

        def stop_ranks(signum: int, frame: Any) -> None:
            for process in multiprocessing.active_children():  # the pool's processes (forked by this one)
                os.kill(process.pid, signal.SIGTERM)

        try:
            signal.signal(signal.SIGTERM, stop_ranks)
            futures = [pool.submit(_fill_rank, r, processes, threads, batch_size) for r in range(processes)]
            try:
                _watch(futures, counter, cache, processes, batch_size)
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
