"""The ``distill`` command: Lightning's ``fit | validate | test | predict`` and the library's own commands.

    distill fit --config recipes/base/student.yaml --config recipes/trashnet/student.yaml
    distill pipeline --demo runs/demo
    distill cache --config ... --model.teacher.weights T.pt   (fill the teacher-output cache, no training)
    distill search | export | prune | report | complexity | demo ...   (each with --help)
"""
from __future__ import annotations

import importlib
import os
import sys

# command -> the module that runs it: a library command's run(args) after distill.command_args parsed its argv,
# or (cache) a Lightning CLI command's own parsing; imported only when that command runs, so that ``distill --help``
# loads no torch or Lightning
COMMANDS: dict[str, str] = {
    "pipeline": "distill.pipeline", "search": "distill.search", "export": "distill.export",
    "report": "distill.report", "complexity": "distill.competition", "demo": "distill.demo",
    "prune": "distill.prune", "cache": "distill.cache_stage",
}
LIGHTNING = ("fit", "validate", "test", "predict")


def expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that say what is wrong with an input or option: the message is the whole story, no traceback."""
    from distill.pipeline import OutputInUseError
    from distill.preprocess import ImageLoadError
    from distill.submission import RuleViolationError

    return (FileNotFoundError, NotADirectoryError, ValueError, ImageLoadError, RuleViolationError, OutputInUseError)


UNION_FAILED = "Does not validate against any of the Union subtypes"


def one_cause(message: str) -> str:
    """jsonargparse's failed-union report (a line per subtype tried, then the whole given value) reduced to the
    causes that are not "it is not None either", each with the lines indented under it (the key and the value
    given): for ``model: ...`` that is the one real error."""
    if UNION_FAILED not in message:
        return message
    causes: list[str] = []
    keep, depth = False, 0
    for line in message.splitlines():  # a cause is its "- " line and the lines indented under it
        text = line.lstrip()
        indent = len(line) - len(text)
        if text.startswith("- "):
            keep, depth = "Expected a <class 'NoneType'>" not in text, indent
            if keep:
                causes.append(text[2:])
        elif keep and indent > depth:
            causes.append(text)
        else:
            keep = False
    return "\n".join(causes) if causes else message


def expected_error(err: BaseException) -> BaseException | None:
    """``err`` itself, or the expected error it was raised from (the Lightning CLI wraps some), or None."""
    known = expected_errors()
    while err is not None:
        if isinstance(err, known):
            return err
        err = err.__cause__ or err.__context__
    return None


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in (*COMMANDS, *LIGHTNING):
        print(__doc__)
        print("commands: " + ", ".join(LIGHTNING + tuple(COMMANDS)) + "; `distill COMMAND --help` for each")
        if argv and argv[0] not in ("-h", "--help"):
            sys.exit(f"distill: unknown command {argv[0]!r}")
        return
    from distill.console import quiet_third_party
    from distill.stopping import StopRequested, stopped_by_sigterm

    quiet_third_party()  # the command's own choice; importing the library leaves warnings and loggers alone
    try:
        run_command(argv)
    except StopRequested as stop:  # SIGTERM: progress saved; say how to resume, exit 143
        print(f"distill: {stop}", file=sys.stderr)
        sys.exit(stop.code)
    except SystemExit as stop:  # a fit's SIGTERM: Lightning's SIGTERMException (status 0); StopOnSignal said the line
        if not stopped_by_sigterm(stop):
            raise
        sys.exit(143)
    except KeyboardInterrupt:
        print("distill: interrupted; finished epochs and the cache fill's progress are saved: run the same "
              "command again to resume", file=sys.stderr)
        sys.exit(130)
    except Exception as err:
        known = expected_error(err)
        if known is None or os.environ.get("DISTILL_VERBOSE"):
            raise
        print(f"distill {argv[0]}: error: {one_cause(str(known))}\n(set DISTILL_VERBOSE=1 to see the traceback)",
              file=sys.stderr)
        sys.exit(2)


def run_command(argv: list[str]) -> None:
    from distill.command_args import PARSERS

    if argv[0] in PARSERS:  # parsed before the command's module (and torch) is imported: --help is instant
        args = PARSERS[argv[0]]().parse_args(argv[1:])
        args.argv = argv[1:]  # what was typed, for a command that records it
        importlib.import_module(COMMANDS[argv[0]]).run(args)
    elif argv[0] in COMMANDS:  # cache: the options of `distill fit`, parsed by the Lightning CLI; no training
        importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
    else:
        from distill.cli import build_cli

        build_cli(argv)


if __name__ == "__main__":
    main()
