"""Which weights a stage should export: the checkpoint the val F1 selected, or the last epoch's, judged on the
held-out images no stage trained on or selected with.

Reads pipeline result files (``distill pipeline --results-json``) that record both (``student_*_holdout_f1_per_seed``
and ``student_*_last_holdout_f1_per_seed``) and prints, per file, arm and seed, the held-out macro F1 of each;
then, over every stage, the mean difference and how often the last epoch wins.

    python benchmarks/selection.py                                   # the committed TrashNet results
    python benchmarks/selection.py runs/a/summary.json runs/b/summary.json
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from common import RESULTS

ARMS = {"student_kd": "KD", "student_ce": "no teacher"}


def stage_pairs(result: dict) -> list[tuple[str, int, float, float]]:
    """``(arm, seed, selected held-out F1, last-epoch held-out F1)`` of every stage the result records both for."""
    pairs = []
    for key, arm in ARMS.items():
        selected = result.get(f"{key}_holdout_f1_per_seed") or []
        last = result.get(f"{key}_last_holdout_f1_per_seed") or []
        for seed, sel, lst in zip(result.get("seeds", []), selected, last):
            if sel is not None and lst is not None:
                pairs.append((arm, seed, sel, lst))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path,
                        help="result / summary files (default: benchmarks/results/trashnet_*.json)")
    args = parser.parse_args()
    files = args.files or sorted(RESULTS.glob("trashnet_*.json"))
    differences = []
    print(f"{'file':40s} {'arm':10s} seed  selected  last   last - selected")
    for path in files:
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise SystemExit(f"{path}: not a readable result file ({err})") from None
        for arm, seed, selected, last in stage_pairs(result):
            differences.append(last - selected)
            print(f"{path.name:40s} {arm:10s} {seed:4d}  {selected:.3f}    {last:.3f}  {100 * (last - selected):+.1f}")
    if not differences:
        raise SystemExit(f"none of {len(files)} files records both held-out figures (selected and last epoch)")
    wins = sum(d > 0 for d in differences)
    print(f"{len(differences)} stages: last epoch - selected checkpoint, mean {100 * statistics.mean(differences):+.1f} "
          f"points (median {100 * statistics.median(differences):+.1f}); the last epoch is better in {wins}, "
          f"worse in {sum(d < 0 for d in differences)}")


if __name__ == "__main__":
    main()
