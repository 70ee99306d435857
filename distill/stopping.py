"""Prompt, safe stops: SIGTERM (what schedulers and containers send) and Ctrl-C end a fit or a cache fill
within one batch, with what is needed to resume on disk and one line saying how.

Lightning notices SIGTERM during ``fit`` (``trainer.received_sigterm``) but acts on it only at the end of an
epoch (a teacher epoch is a minute on a CPU); ``StopOnSignal`` acts after the current batch. The teacher-cache
fill runs before Lightning installs its handler, so ``stop_requests`` installs one for the fill's loop.
"""
from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

from lightning.pytorch.callbacks import Callback


class StopRequested(SystemExit):
    """A run stopped on request, its progress saved; ``str()`` says how to resume. Exit status 143 (SIGTERM)."""

    def __init__(self, message: str):
        super().__init__(143)
        self.message = message

    def __str__(self) -> str:
        return self.message


@contextmanager
def stop_requests() -> Iterator[Callable[[], bool]]:
    """While inside, SIGTERM sets a flag instead of killing the process; yields ``requested()``. The previous
    handler is restored on exit (Lightning's own, when inside a fit)."""
    received = []
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield lambda: False
        return
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if received and callable(previous) and previous not in (signal.SIG_IGN, signal.SIG_DFL):
            previous(signal.SIGTERM, None)  # let an outer handler (Lightning's) know too


class StopOnSignal(Callback):
    """Stop a fit after the current training batch once SIGTERM arrived; ``last.ckpt`` of the last finished
    epoch is what resumes it (``--ckpt_path .../last.ckpt``; the pipeline resumes by itself)."""

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if getattr(trainer, "received_sigterm", False):
            paths = [p for c in trainer.checkpoint_callbacks
                     for p in (getattr(c, "last_model_path", ""), getattr(c, "best_model_path", "")) if p]
            last = next((p for p in paths if p.endswith("last.ckpt")), paths[0] if paths else "")
            where = (f"resume from {last} (the end of the last finished epoch): run the same pipeline command "
                     "again, or add --ckpt_path to the same distill fit command") if last else \
                "no epoch had finished, so nothing to resume: run the command again"
            raise StopRequested(f"stopped by SIGTERM at epoch {trainer.current_epoch}, batch {batch_idx}; {where}")
