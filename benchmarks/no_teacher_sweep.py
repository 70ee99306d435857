"""The no-teacher sweep: the student without a teacher under several settings at the same deployed MACs, each cell the
held-out macro F1 of its last-epoch weights per seed, read from pipeline results (``--results-json`` files or a run's
``summary.json``); the strongest cell is the baseline a verdict sets the teacher's students against
(``recipe.yaml``'s ``baselines``). Writes ``benchmarks/results/no_teacher_sweep.json``.

    python benchmarks/no_teacher_sweep.py --split "holdout_seed 0 (development)" \\
        --cell rep2 "rep: 2, weight decay 0.05, cached views, 600 epochs" benchmarks/results/trashnet_kd_tiny96_rep2.json \\
        --cell rep4 "rep: 4, ..." benchmarks/results/trashnet_kd_split0.json
    python benchmarks/no_teacher_sweep.py ... --cell rep2 "..." ../runs/x/summary.json rep2   # a named arm of a run

A cell's source is a results file and, optionally, the name of one of its ``no_teacher_arms`` (default: the run's
same-config arm). Cells are compared on their seeds' mean; 1-seed cells are screens.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import relative, write_result  # noqa: E402


def cell_f1(source: Path, arm: str | None) -> list[float]:
    """The no-teacher last-epoch held-out F1 per seed of one arm of a pipeline result."""
    data = json.loads(source.read_text())
    if arm is None:
        values = data.get("student_ce_last_holdout_f1_per_seed") or []
    else:
        arms = data.get("no_teacher_arms") or {}
        if arm not in arms:
            raise SystemExit(f"{source}: no no-teacher arm {arm!r} (it has {sorted(arms)})")
        values = arms[arm]["last_holdout_f1_per_seed"]
    if not values or any(v is None for v in values):
        raise SystemExit(f"{source}: no held-out F1 of the no-teacher arm {arm or 'same config'}")
    return [float(v) for v in values]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", required=True, help="the held-out split the cells were scored on")
    parser.add_argument("--cell", nargs="+", action="append", required=True, metavar="NAME SETTING FILE [ARM]",
                        help="a cell: its name, its setting in words, a pipeline results file, optionally an arm")
    parser.add_argument("--missing", nargs="*", default=[], help="cells of the sweep not measured yet")
    args = parser.parse_args()
    cells = []
    for cell in args.cell:
        if len(cell) not in (3, 4):
            raise SystemExit(f"--cell {' '.join(cell)}: give NAME SETTING FILE [ARM]")
        name, setting, source = cell[:3]
        f1 = cell_f1(Path(source), cell[3] if len(cell) == 4 else None)
        cells.append({"name": name, "setting": setting, "source": relative(source), "arm": cell[3] if len(cell) == 4
                      else "same config", "last_holdout_f1_per_seed": f1, "mean": statistics.fmean(f1),
                      "seeds": len(f1)})
    best = max(cells, key=lambda c: c["mean"])
    for c in sorted(cells, key=lambda c: -c["mean"]):
        print(f"{c['name']:12s} {c['mean']:.4f} ({' / '.join(f'{f:.3f}' for f in c['last_holdout_f1_per_seed'])})"
              f"  {c['setting']}")
    print(f"strongest: {best['name']}" + (f"; not measured: {', '.join(args.missing)}" if args.missing else ""))
    write_result("no_teacher_sweep", {"split": args.split, "cells": cells, "strongest": best["name"],
                                      "missing": args.missing})


if __name__ == "__main__":
    main()
