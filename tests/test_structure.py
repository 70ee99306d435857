"""The package's shape: every module imports on its own, and no module imports another that imports it back."""
import ast
import functools
import importlib
import json
import logging
import multiprocessing
import pkgutil
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

import distill.models as models
import pytest

import distill

PACKAGES = (distill, models)


@functools.cache
def all_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        root = Path(package.__file__).parent
        found[package.__name__] = root / "__init__.py"
        for info in pkgutil.walk_packages([str(root)], prefix=package.__name__ + "."):
            spec = info.module_finder.find_spec(info.name.rpartition(".")[2])
            found[info.name] = Path(spec.origin)
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of this project that ``name`` imports anywhere in its file (function-level imports too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out |= {base} | {f"{base}.{a.name}" for a in node.names}
    # a submodule may use its own package; that is not a cycle of the layers
    return {m for m in out if m in known and m != name and not name.startswith(m + ".")}


def run_python(code: str, *args: str, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter with ``args`` as ``sys.argv[1:]``; it must exit 0."""
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                            env={**__import__("os").environ, **env})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_no_import_cycle():
    modules = all_modules()
    graph = {name: imports_of(name, path, set(modules)) for name, path in modules.items()}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [node, nxt]))
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])
    assert len(modules) > 20 and "distill.losses.dist" in modules


def import_each_alone(names: list[str]) -> None:
    """Before each module, every module of the project is forgotten, so each one is imported first, on its
    own; importing it must leave warning filters and logger levels as they were."""
    def state():
        levels = {n: logger.level for n, logger in logging.Logger.manager.loggerDict.items()
                  if isinstance(logger, logging.Logger)}
        return list(warnings.filters), levels

    filters, levels = state()
    for name in names:
        for loaded in [m for m in sys.modules if m.split(".")[0] == "distill"]:
            del sys.modules[loaded]
        importlib.import_module(name)
        after_filters, after_levels = state()
        assert after_filters == filters, (name, [f for f in after_filters if f not in filters])
        changed = {n: v for n, v in after_levels.items() if levels.get(n, logging.NOTSET) != v}
        assert not changed, (name, changed)


def in_a_fork(function, *args) -> None:
    """``function(*args)`` in a process forked from this one (what it imports or changes stays there); its
    failure, with the traceback, fails the test."""
    receive, send = multiprocessing.Pipe(duplex=False)

    def child():
        try:
            function(*args)
            send.send(None)
        except BaseException:  # noqa: BLE001 - everything goes back to the test
            send.send(traceback.format_exc())

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    error = receive.recv() if receive.poll(300) else "no answer within 300 s"
    process.join(timeout=60)
    assert error is None, error


def test_every_module_imports_alone_and_changes_no_global_state():
    """In a fork of this process, where the third-party libraries are loaded already (they are not what is
    tested): every module imports on its own, and ``import distill`` changes no warning filter or logger
    level (the ``distill`` command does that for itself)."""
    import albumentations  # noqa: F401 - the third-party libraries first
    import fvcore  # noqa: F401
    import jsonargparse  # noqa: F401
    import lightning.pytorch.cli  # noqa: F401
    import torch  # noqa: F401
    import torchmetrics  # noqa: F401

    in_a_fork(import_each_alone, sorted(n for n in all_modules() if n != "distill.__main__"))


# bottom-up: a module imports only from its own layer or the ones before it (package __init__ re-exports aside)
LAYERS = [
    ("networks", ["distill.models"]),
    ("data and losses", ["distill.choices", "distill.console", "distill.checkpoint", "distill.precision",
                         "distill.preprocess", "distill.transforms", "distill.layout", "distill.splits",
                         "distill.images", "distill.data", "distill.losses", "distill.optim",
                         "distill.evaluation", "distill.stopping", "distill.runtime", "distill.teacher",
                         "distill.complexity", "distill.competition", "distill.demo"]),
    ("modules", ["distill.module", "distill.cache", "distill.callbacks", "distill.submission", "distill.export",
                 "distill.prune", "distill.report"]),
    ("cli", ["distill.cli"]),
    ("stages", ["distill.recipe", "distill.fingerprint", "distill.stage_checks", "distill.stages", "distill.cache_stage",
                "distill.run_estimate"]),
    ("commands", ["distill.command_args", "distill.summary", "distill.pipeline", "distill.search", "distill.commands",
                  "distill.__main__"]),
]


def layer_of(name: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{name} belongs to no layer of tests/test_structure.py LAYERS: add it to one")


def test_layers_read_bottom_up():
    """networks -> data/losses -> modules -> CLI -> stages -> commands, with no arrow back."""
    modules = all_modules()
    for name, path in modules.items():
        if name == "distill":
            continue  # the package's own __init__ only re-exports
        for imported in imports_of(name, path, set(modules)):
            if imported == "distill":
                continue
            assert layer_of(imported) <= layer_of(name), (
                f"{name} ({LAYERS[layer_of(name)][0]}) imports {imported} ({LAYERS[layer_of(imported)][0]})")


HELP = [["--help"], *([command, "--help"] for command in
                       ("pipeline", "cache", "export", "prune", "report", "complexity", "search", "demo"))]


def test_help_loads_neither_torch_nor_lightning():
    """``distill --help`` and every library command's ``--help`` start fast: the heavy libraries load when a
    command runs (one interpreter; after each help, none of them may be loaded)."""
    code = ("import json, sys\nfrom distill.commands import main\n"
            "for argv in json.loads(sys.argv[1]):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "    heavy = [m for m in ('torch', 'lightning', 'torchvision', 'fvcore') if m in sys.modules]\n"
            "    assert not heavy, (argv, heavy)\n")
    printed = run_python(code, json.dumps(HELP), timeout=120).stdout
    assert all(f"distill {argv[0]}" in printed for argv in HELP[1:] if argv[0] not in ("pipeline", "cache"))
    assert "The whole job in one command" in printed  # distill pipeline --help: the pipeline's own description


def test_a_command_parses_then_runs(capsys):
    from distill.commands import main

    main(["complexity", "--model", "nano"])
    assert "325,728" in capsys.readouterr().out  # nano at 9 classes, 64 px (test_models.PRESET_MACS)
    with pytest.raises(SystemExit) as stopped:
        main(["prune", "model.pt", "--macs", "many", "--out", "x.pt"])
    assert stopped.value.code == 2 and "--macs: invalid int value: 'many'" in capsys.readouterr().err


def test_setup_cfg_lists_every_package():
    """A non-editable install ships only the packages setup.cfg names: a new sub-package must be listed there."""
    import configparser

    config = configparser.ConfigParser()
    config.read(Path(__file__).parents[1] / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    packages = {name for name, path in all_modules().items() if path.name == "__init__.py"}
    assert packages <= listed, sorted(packages - listed)


def readme_commands() -> list[list[str]]:
    """Every ``distill ...`` command of README.md's bash blocks, continuation lines joined, comments dropped."""
    import re
    import shlex

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text() + (root / "docs" / "guide.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("distill "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_the_readme_library_commands_parse_as_written(capsys):
    """The README's commands of the library (pipeline, export, report, complexity, search) name only options that
    exist, with valid values; ``distill complexity --all`` runs as written. (``fit``/``validate``/``predict`` are
    Lightning's and read files the README's examples name.)"""
    from distill.command_args import PARSERS
    from distill.competition import run as complexity

    commands = readme_commands()
    library = [c for c in commands if c[0] in ("pipeline", *PARSERS)]
    assert {c[0] for c in library} >= {"pipeline", "export", "report", "complexity", "search"}
    for command in library:
        parser = PARSERS[command[0]]()
        args = parser.parse_args(command[1:])  # exits (SystemExit 2) on an unknown option or a bad value
        if command == ["complexity", "--all"]:
            complexity(args)
            assert "tiny_orepa" in capsys.readouterr().out


def test_readme_layer_table_is_the_enforced_one():
    """README.md's table of layers names every module of each layer of ``LAYERS`` in that layer's row."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "docs" / "guide.md").read_text()  # the README's guide
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| ([a-z ]+) \| (.+) \|$", readme, re.M)}
    assert [name for name, _ in LAYERS] == [name for name in rows if name in dict(LAYERS)]
    for layer, modules in LAYERS:
        for module in modules:
            short = module.removeprefix("distill.").replace(".", "/")
            assert module == "distill.models" or f"`{short}" in rows[layer], f"README's {layer!r} row lacks {module}"
