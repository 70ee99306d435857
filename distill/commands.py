"""The ``distill`` command: Lightning's ``fit | validate | test | predict`` and the library's own commands.

    distill fit --config recipes/base/student.yaml --config recipes/trashnet/student.yaml
    distill pipeline --demo runs/demo
    distill cache --config ... --model.teacher.weights T.pt   (fill the teacher-output cache, no training)
    distill search | export | prune | report | complexity | demo ...   (each with --help)
"""
from __future__ import annotations

import os
import sys
from typing import Callable

from distill import cache_stage, competition, demo, export, pipeline, prune, report, search
from distill.cli import build_cli
from distill.console import quiet_third_party
from distill.pipeline import OutputInUseError
from distill.preprocess import ImageLoadError
from distill.stopping import StopRequested
from distill.submission import RuleViolationError

COMMANDS: dict[str, Callable[[list[str] | None], None]] = {
    "pipeline": pipeline.main, "search": search.main, "export": export.main, "report": report.main,
    "complexity": competition.main, "demo": demo.main, "prune": prune.main, "cache": cache_stage.main,
}
LIGHTNING = ("fit", "validate", "test", "predict")


# Errors that say what is wrong with an input or option: the message is the whole story, no traceback
EXPECTED_ERRORS = (FileNotFoundError, NotADirectoryError, ValueError, ImageLoadError, RuleViolationError,
                   OutputInUseError)


def expected_error(err: BaseException) -> BaseException | None:
    """``err`` itself, or the expected error it was raised from (the Lightning CLI wraps some), or None."""
    while err is not None:
        if isinstance(err, EXPECTED_ERRORS):
            return err
        err = err.__cause__ or err.__context__
    return None


def main(argv: list[str] | None = None) -> None:
    quiet_third_party()  # the command's own choice; importing the library leaves warnings and loggers alone
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        run_command(argv)
    except StopRequested as stop:  # SIGTERM: progress saved; say how to resume, exit 143
        print(f"distill: {stop}", file=sys.stderr)
        sys.exit(stop.code)
    except KeyboardInterrupt:
        print("distill: interrupted; finished epochs and the cache fill's progress are saved: run the same "
              "command again to resume", file=sys.stderr)
        sys.exit(130)
    except Exception as err:
        known = expected_error(err)
        if known is None or os.environ.get("DISTILL_VERBOSE"):
            raise
        name = f"distill {argv[0]}" if argv else "distill"
        print(f"{name}: error: {known}\n(set DISTILL_VERBOSE=1 to see the traceback)", file=sys.stderr)
        sys.exit(2)


def run_command(argv: list[str]) -> None:
    if argv and argv[0] in COMMANDS:
        COMMANDS[argv[0]](argv[1:])
    elif argv and argv[0] in LIGHTNING:
        build_cli(argv)
    else:
        print(__doc__)
        print("commands: " + ", ".join(LIGHTNING + tuple(COMMANDS)) + "; `distill COMMAND --help` for each")
        if argv and argv[0] not in ("-h", "--help"):
            sys.exit(f"distill: unknown command {argv[0]!r}")


if __name__ == "__main__":
    main()
