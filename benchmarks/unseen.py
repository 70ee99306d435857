"""Two sets of student stages compared on every labelled image that chose none of their weights: the last epoch's
weights on the val and held-out splits together (a paired bootstrap over images), and on each split alone.

    python benchmarks/unseen.py runs/a/student_kd runs/a/student_ce     # KD against no teacher
    python benchmarks/unseen.py runs/b/student_kd runs/a/student_kd     # two teachers, the same student recipe

Each argument is an arm's folder of ``seed_*`` stages; seeds are paired in order. A stage trained before the
pipeline wrote ``val_last.json`` gets it here: its ``checkpoints/last.ckpt`` scored on the val split of its own
config. Run it from the folder the pipeline ran in (stage records hold the paths it was given).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from distill.checkpoint import load_trained
from distill.evaluation import macro_f1, paired_bootstrap
from distill.stages import StageRecord, evaluate_split


def val_predictions(stage: Path, record: StageRecord) -> dict:
    """The last epoch's per-image predictions on the val split, written to ``val_last.json`` when missing."""
    path = Path(record.last_val_file or stage / "val_last.json")
    if not path.is_file():
        from distill.cli import build_cli

        last = stage / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise SystemExit(f"{stage}: no val_last.json and no checkpoints/last.ckpt to make it from")
        cli = build_cli({"trainer": {"logger": False}}, run=False, config_files=[record.config])
        cli.datamodule.setup("validate")
        evaluate_split(load_trained(last)[0], cli.datamodule, "val", path)
    return json.loads(path.read_text())


def arm_predictions(arm: Path) -> list[dict]:
    """Per seed stage of ``arm``: ``{"seed", "val", "held"}``, each ``{"paths", "labels", "preds", "f1"}``."""
    stages = sorted(p.parent for p in arm.glob("seed_*/stage.json"))
    if not stages:
        raise SystemExit(f"{arm}: no finished seed_*/stage.json (give an arm folder such as runs/x/student_kd)")
    runs = []
    for stage in stages:
        record = StageRecord.load(stage / "stage.json")
        if record.last_holdout_file is None:
            raise SystemExit(f"{stage}: no held-out predictions of the last epoch (holdout_last.json)")
        runs.append({"seed": record.seed, "val": val_predictions(stage, record),
                     "held": json.loads(Path(record.last_holdout_file).read_text())})
    return runs


def joined(run: dict, parts: tuple[str, ...]) -> tuple[list[str], np.ndarray, np.ndarray]:
    paths = [p for part in parts for p in run[part]["paths"]]
    labels = np.array([y for part in parts for y in run[part]["labels"]])
    preds = np.array([y for part in parts for y in run[part]["preds"]])
    return paths, labels, preds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="arm A: a folder of seed_* stages")
    parser.add_argument("b", type=Path, help="arm B: the same")
    args = parser.parse_args()
    a, b = arm_predictions(args.a), arm_predictions(args.b)
    classes = len(a[0]["val"]["class_names"])
    print(f"A = {args.a} ({len(a)} seed(s)), B = {args.b} ({len(b)} seed(s)); last-epoch weights, macro F1")
    for parts, name in ((("val", "held"), "val + held-out"), (("held",), "held-out"), (("val",), "val")):
        data = [joined(run, parts) for run in a + b]
        if any(d[0] != data[0][0] for d in data):
            raise SystemExit(f"the stages scored different {name} images: compare only runs of one data split")
        labels = data[0][1]
        f1 = [macro_f1(labels, d[2], classes) for d in data]
        cmp = paired_bootstrap(labels, [d[2] for d in data[:len(a)]], [d[2] for d in data[len(a):]], classes)
        print(f"{name:15s} ({len(labels)} images): A {' / '.join(f'{x:.3f}' for x in f1[:len(a)])} = "
              f"{statistics.mean(f1[:len(a)]):.3f}; B {' / '.join(f'{x:.3f}' for x in f1[len(a):])} = "
              f"{statistics.mean(f1[len(a):]):.3f}; A - B {100 * cmp.difference:+.1f} points "
              f"({100 * cmp.level:.0f}% paired bootstrap {100 * cmp.low:+.1f} to {100 * cmp.high:+.1f})")


if __name__ == "__main__":
    main()
