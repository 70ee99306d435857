"""Prompt, safe stops: SIGTERM (what schedulers and containers send) and Ctrl-C end a fit or a cache fill
within one batch, with what is needed to resume on disk and one line saying how.

During ``fit`` Lightning acts on SIGTERM itself after the current (training or validation) batch, with a
``SIGTERMException`` of exit status 0; ``distill.callbacks.StopOnSignal`` says the resume line and ``distill``
exits 143. The teacher-cache fill runs before Lightning installs its handler, so ``stop_requests`` installs one
for the fill's loop.
"""
from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable


class StopRequested(SystemExit):
    """A run stopped on request, its progress saved; ``str()`` says how to resume. Exit status 143 (SIGTERM)."""

    def __init__(self, message: str):
        super().__init__(143)
        self.message = message

    def __str__(self) -> str:
        return self.message


def stopped_by_sigterm(exit: SystemExit) -> bool:
    """Whether ``exit`` is the ``SIGTERMException`` with which Lightning ends a fit on SIGTERM (never, while Lightning
    is not even loaded: a ``--help`` exit stays free of it)."""
    if "lightning.pytorch" not in sys.modules:
        return False
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    return isinstance(exit, SIGTERMException)


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
