"""Two sets of student stages compared on every labelled image that chose none of their weights: the last epoch's
weights on the val and held-out splits together (a bootstrap over seeds and images, the images paired), and on each
split alone.

    python benchmarks/unseen.py runs/a/student_kd runs/a/student_ce     # KD against no teacher
    python benchmarks/unseen.py runs/b/student_kd runs/a/student_kd     # two teachers, the same student recipe
    python benchmarks/unseen.py runs/b/student_kd runs/a/student_kd --json two_teachers  # + results/two_teachers.json

Each argument is an arm's folder of ``seed_*`` stages; seeds are paired in order. Arms whose val images differ (one
trained on train + val, ``data.val_mode: merge``) are compared on the held-out images alone. A stage trained before the
pipeline wrote ``val_last.json`` gets it here: its ``checkpoints/last.ckpt`` scored on the val split of its own
config. Run it from the folder the pipeline ran in (stage records hold the paths it was given).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, relative, write_result  # noqa: E402

from distill.checkpoint import load_trained  # noqa: E402
from distill.evaluation import ScoredImages, compare_scored, score_split  # noqa: E402
from distill.stages import StageRecord  # noqa: E402


def val_file(stage: Path, record: StageRecord) -> Path:
    """The last epoch's per-image predictions on the val split, written to ``val_last.json`` when missing."""
    path = Path(record.last_val_file or stage / "val_last.json")
    if not path.is_file():
        from distill.cli import build_cli

        last = stage / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise SystemExit(f"{stage}: no val_last.json and no checkpoints/last.ckpt to make it from")
        cli = build_cli({"trainer": {"logger": False}}, run=False, config_files=[record.config])
        cli.datamodule.setup("validate")
        score_split(load_trained(last)[0], cli.datamodule, "val", path)
    return path


def arm_files(arm: Path) -> list[dict[str, Path]]:
    """Per seed stage of ``arm``: its prediction files, ``{"val": ..., "held": ...}``."""
    stages = sorted(p.parent for p in arm.glob("seed_*/stage.json"))
    if not stages:
        raise SystemExit(f"{arm}: no finished seed_*/stage.json (give an arm folder such as runs/x/student_kd)")
    runs = []
    for stage in stages:
        record = StageRecord.load(stage / "stage.json")
        if record.last_holdout_file is None:
            raise SystemExit(f"{stage}: no held-out predictions of the last epoch (holdout_last.json)")
        runs.append({"val": val_file(stage, record), "held": Path(record.last_holdout_file),
                     "stage": relative(stage), "fingerprint": record.fingerprint})
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="arm A: a folder of seed_* stages")
    parser.add_argument("b", type=Path, help="arm B: the same")
    parser.add_argument("--json", metavar="NAME", help="also write the comparisons to benchmarks/results/NAME.json")
    args = parser.parse_args()
    a, b = arm_files(args.a), arm_files(args.b)
    print(f"A = {args.a} ({len(a)} seed(s)), B = {args.b} ({len(b)} seed(s)); last-epoch weights, macro F1")
    comparisons = {}
    for parts, name in ((("val", "held"), "val + held-out"), (("held",), "held-out"), (("val",), "val")):
        try:
            cmp = compare_scored([ScoredImages.read(*(run[p] for p in parts)) for run in a],
                                 [ScoredImages.read(*(run[p] for p in parts)) for run in b], f"{name} images")
        except ValueError as err:
            if "val" not in parts:
                raise SystemExit(str(err)) from None
            # arms trained on other splits (e.g. one on train + val): the held-out images are still shared
            print(f"{name:15s} not compared: {err}")
            continue
        comparisons[name] = cmp
        f1_a, f1_b = cmp["a_f1_per_seed"], cmp["b_f1_per_seed"]
        print(f"{name:15s} ({cmp['images']} images): A {' / '.join(f'{x:.3f}' for x in f1_a)} = "
              f"{statistics.mean(f1_a):.3f}; B {' / '.join(f'{x:.3f}' for x in f1_b)} = "
              f"{statistics.mean(f1_b):.3f}; A - B {100 * cmp['difference']:+.1f} points "
              f"({100 * cmp['level']:.0f}% interval {100 * cmp['low']:+.1f} to {100 * cmp['high']:+.1f}, resampling "
              f"{cmp['resampled']})")
    if args.json:
        write_result(args.json, {"a": relative(args.a), "b": relative(args.b), "weights": "last epoch",
                                 "comparisons": comparisons, "machine": machine(),
                                 "stages": {run["stage"]: run["fingerprint"] for run in a + b}})


if __name__ == "__main__":
    main()
