"""The ``distill`` command: Lightning's ``fit | validate | test | predict`` and the library's own commands.

    distill fit --config recipes/base/student.yaml --config recipes/trashnet/student.yaml
    distill pipeline --demo runs/demo
    distill search | export | prune | report | complexity | demo ...   (each with --help)
"""
from __future__ import annotations

import sys
from typing import Callable

from distill import competition, demo, export, pipeline, prune, report, search
from distill.cli import build_cli
from distill.console import quiet_third_party

COMMANDS: dict[str, Callable[[list[str] | None], None]] = {
    "pipeline": pipeline.main, "search": search.main, "export": export.main, "report": report.main,
    "complexity": competition.main, "demo": demo.main, "prune": prune.main,
}
LIGHTNING = ("fit", "validate", "test", "predict")


def main(argv: list[str] | None = None) -> None:
    quiet_third_party()  # the command's own choice; importing the library leaves warnings and loggers alone
    argv = sys.argv[1:] if argv is None else list(argv)
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
