"""What teachers' cached targets carry beyond the label, side by side: for each teacher-output cache folder, the
off-class entropy (``distill.evaluation.offclass_entropy``; 1.0 = the classes it did not pick are equally likely to
it), the probability mass off its pick at KD temperatures, and the spread of its non-target logits relative to its
top-logit margin (label smoothing draws the non-target logits together: a small spread).

    python benchmarks/teacher_targets.py runs/a/teacher_cache runs/b/teacher_cache --json teacher_targets

Writes benchmarks/results/NAME.json with ``--json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, relative, write_result  # noqa: E402

from distill.evaluation import offclass_entropy  # noqa: E402


def target_figures(logits: np.ndarray, temperatures: tuple[float, ...] = (1.0, 2.0, 4.0)) -> dict:
    """The figures of one cache's logits (``images x views x classes``)."""
    values = torch.from_numpy(np.array(logits, dtype=np.float32)).flatten(0, -2)
    top = values.argmax(-1, keepdim=True)
    others = values.masked_fill(torch.zeros_like(values, dtype=torch.bool).scatter(-1, top, True), float("nan"))
    spread = torch.from_numpy(np.nanstd(others.numpy(), -1))
    margin = values.gather(-1, top).squeeze(-1) - torch.from_numpy(np.nanmean(others.numpy(), -1))
    return {
        "targets": int(values.shape[0]),
        "offclass_entropy": offclass_entropy(logits),
        "off_pick_mass": {str(t): float(1 - (values / t).softmax(-1).max(-1).values.mean()) for t in temperatures},
        "nontarget_spread_over_margin": float((spread / margin).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("caches", nargs="+", type=Path, help="teacher-output cache folders (a stage's teacher_cache)")
    parser.add_argument("--json", metavar="NAME", help="also write benchmarks/results/NAME.json")
    args = parser.parse_args()
    rows = []
    for folder in args.caches:
        files = sorted(folder.glob("*.logits.npy"))
        if not files:
            raise SystemExit(f"{folder}: no *.logits.npy (give a teacher-output cache folder)")
        for path in files:
            stage = folder / "stage.json"
            try:
                figures = target_figures(np.load(path, mmap_mode="r"))
            except ValueError as err:  # e.g. a two-class cache: no other classes to compare
                raise SystemExit(f"{path}: {err}") from None
            row = {"cache": relative(path), **figures}
            if stage.is_file():
                row["teacher_view_f1"] = json.loads(stage.read_text()).get("teacher_view_f1")
            rows.append(row)
            print(f"{row['cache']}: off-class entropy {row['offclass_entropy']:.3f}, mass off the pick "
                  + ", ".join(f"T={t} {m:.3f}" for t, m in row["off_pick_mass"].items())
                  + f", non-target spread / margin {row['nontarget_spread_over_margin']:.3f}")
    if args.json:
        write_result(args.json, {"rows": rows, "machine": machine()})


if __name__ == "__main__":
    main()
