"""What the library prints: its own one-line messages (``say``, rank zero only), and nothing else by
default: the known third-party notices that crowd out progress bars are silenced at their source.
``DISTILL_VERBOSE=1`` keeps every one of them."""
from __future__ import annotations

import logging
import os
import warnings

# (category, message regex, module regex) of warnings that say nothing a user of this library can act on
_WARNINGS = [
    (UserWarning, r".*does not have many workers.*", ""),
    (UserWarning, r".*The number of training batches .* is smaller than the logging interval.*", ""),
    (UserWarning, r".*`tensorboardX` has been removed as a dependency.*", ""),
    (UserWarning, r".*The dirpath has changed from.*", ""),
    (UserWarning, r".*exists and is not empty.*", ""),
    (Warning, r".*isinstance\(treespec, LeafSpec\).*", ""),
    (FutureWarning, r".*", r"fvcore.*"),
]
_LOGGERS = ["lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
            "lightning.fabric.utilities.seed",
            "lightning.pytorch.accelerators.cuda", "fvcore", "ptflops"]
# loggers whose warnings are notices of no use here: torch's C++-extension loader (imported with torch.utils.benchmark)
# says "No CUDA runtime is found, using CUDA_HOME=..." on every CPU machine that has a CUDA_HOME
_NOTICE_LOGGERS = ["torch.utils.cpp_extension"]


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """``warning: <message>``: what the warning says, without the source file and line that raised it."""
    return f"warning: {message}\n"


def quiet_third_party() -> None:
    """Hide Lightning's hardware/tip notices and known library warnings, and print the others as one plain
    ``warning: ...`` line, unless ``DISTILL_VERBOSE`` is set."""
    if os.environ.get("DISTILL_VERBOSE"):
        return
    warnings.formatwarning = one_line_warning
    for category, message, module in _WARNINGS:
        warnings.filterwarnings("ignore", category=category, message=message, module=module)
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in _NOTICE_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def say(message: str) -> None:
    """One line of the library's own progress, from the first process only (Lightning's rank-zero rule,
    imported when first needed so that a command's ``--help`` loads no Lightning)."""
    from lightning.pytorch.utilities import rank_zero_only

    if getattr(rank_zero_only, "rank", 0) == 0:
        print(message, flush=True)


_SAID: set[str] = set()


def say_once(message: str) -> None:
    """``say`` a message the first time only (a setting that every stage of a pipeline resolves the same way)."""
    if message not in _SAID:
        _SAID.add(message)
        say(message)


def duration(seconds: float) -> str:
    """``42 s``, ``7.5 min`` or ``2.3 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
