"""Options with a fixed set of values are ``Literal`` type hints: the CLI (jsonargparse) reports the choices when
it parses a config, and ``check_choice`` gives the same answer to code that builds the objects directly."""
from __future__ import annotations

from typing import Any, get_args


def check_choice(value: object, choices: Any, option: str) -> None:
    """``value`` must be one of the ``Literal`` type ``choices``; the error names ``option`` and the choices."""
    if value not in get_args(choices):
        raise ValueError(f"{option}={value!r}: choose one of {list(get_args(choices))}")
