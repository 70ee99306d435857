"""The F1-MACs frontier from pipeline results (``distill pipeline ... --baseline --results-json FILE``): one row per
student budget and arm (``kd`` with its distillation method, ``none`` for the student without a teacher), held-out
last-epoch F1 per seed, the competition score of the mean, and for a teacher row KD minus no teacher (paired 95 %
interval over images) and the fraction of the teacher-student gap it closes; a plot of both arms beside it.

    python benchmarks/frontier.py benchmarks/results/trashnet_speed.json benchmarks/results/trashnet_nano.json \
        benchmarks/results/trashnet_nano_teacher224.json  # ... one line per method and teacher

A KD-only result (no ``--baseline``) takes its no-teacher arm from another run as ``RESULT.json=COMPARISON.json``,
the comparison written by ``benchmarks/unseen.py KD_RUN NONE_RUN --json NAME`` (its held-out figures).

Writes benchmarks/results/frontier.json ({"rows": [...]}) and frontier.png.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, relative, write_result  # noqa: E402

from distill.competition import competition_score  # noqa: E402


def method_of(result: dict) -> str:
    """The distillation loss's class name from the command's ``--set`` or the recipe (KD by default), marked
    when its teachers are cross-fitted (the ``trashnet_crossfit`` recipe or ``teacher.cross_fit``)."""
    command = result.get("command", "")
    method = next((name for name in ("DKD", "DIST") if f"distill.losses.{name}" in command), "KD")
    return f"{method}, cross-fitted" if "crossfit" in command or "cross_fit" in command else method


def rows_of(argument: str) -> list[dict]:
    path, _, against = argument.partition("=")
    path = Path(path)
    result = json.loads(path.read_text())
    macs = result["student_macs_competition"]
    teacher = result["teacher_holdout_f1"]
    kd = result["student_kd_last_holdout_f1_per_seed"]
    ce = result["student_ce_last_holdout_f1_per_seed"]
    comparison = result.get("kd_minus_ce_last_holdout")
    if against:  # the no-teacher arm of another run, paired by benchmarks/unseen.py
        held_out = json.loads(Path(against).read_text())["comparisons"]["held-out"]
        if [round(f, 6) for f in held_out["a_f1_per_seed"]] != [round(f, 6) for f in kd]:
            raise ValueError(f"{against} compares other students than {path} holds (held-out F1 per seed differ)")
        comparison, ce_elsewhere = held_out, held_out["b_f1_per_seed"]
    common = {"macs": macs, "seeds": result["seeds"], "result_file": relative(path),
              "teacher_holdout_f1": teacher}
    if against:
        common["comparison_file"] = relative(Path(against))
    rows = []
    if ce:
        mean = statistics.fmean(ce)
        rows.append({**common, "method": "none", "holdout_f1_per_seed": ce, "holdout_f1": mean,
                     "score": competition_score(mean, macs),
                     "views": result.get("baseline_views") or "fresh"})
    mean = statistics.fmean(kd)
    row = {**common, "method": method_of(result), "holdout_f1_per_seed": kd, "holdout_f1": mean,
           "score": competition_score(mean, macs)}
    if comparison:
        row["minus_no_teacher"] = {k: comparison[k] for k in ("difference", "low", "high")}
        gap = teacher - statistics.fmean(ce if not against else ce_elsewhere)
        row["gap_closed"] = comparison["difference"] / gap if gap > 0 else None
    rows.append(row)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = {"none": "o", "KD": "s", "DKD": "^", "DIST": "D", "KD, cross-fitted": "P"}
    series = sorted({(r["method"], round(r["teacher_holdout_f1"], 3)) for r in rows}, key=lambda k: (k[1], k[0]))
    for offset, (method, teacher) in enumerate(series):  # one line per method and teacher
        mine = sorted((r for r in rows if (r["method"], round(r["teacher_holdout_f1"], 3)) == (method, teacher)),
                      key=lambda r: r["macs"])
        x = [r["macs"] / 1e6 + 0.004 * (offset - len(series) / 2) for r in mine]  # side by side at one budget
        label = "no teacher" if method == "none" else method
        line, = ax.plot(x, [r["holdout_f1"] for r in mine], marker=markers.get(method, "x"),
                        label=f"{label} (teacher held-out {teacher:.3f}{'' if method != 'none' else ', its run'})")
        for r, xi in zip(mine, x):
            ax.vlines(xi, min(r["holdout_f1_per_seed"]), max(r["holdout_f1_per_seed"]), color=line.get_color(),
                      alpha=0.5)
    ax.set_xlabel("MACs (millions, competition counter)")
    ax.set_ylabel("held-out macro F1 (mean of seeds; bars: range)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="pipeline --results-json files with --baseline, or "
                        "RESULT.json=COMPARISON.json (a KD-only result and its unseen.py comparison)")
    args = parser.parse_args()
    rows = [row for path in args.results for row in rows_of(path)]
    rows.sort(key=lambda r: (r["macs"], r["method"]))
    write_result("frontier", {"rows": rows})
    plot(rows, RESULTS / "frontier.png")
    for r in rows:
        extra = ""
        if "minus_no_teacher" in r:
            m = r["minus_no_teacher"]
            extra = (f"  KD - none {100 * m['difference']:+.1f} ({100 * m['low']:+.1f} to {100 * m['high']:+.1f})"
                     + (f", gap closed {r['gap_closed']:.2f}" if r.get("gap_closed") is not None else ""))
        print(f"{r['macs']:>10,} {r['method']:<5} F1 {r['holdout_f1']:.3f} score {r['score']:.4f}{extra}")
    print(f"wrote {RESULTS / 'frontier.json'} and {RESULTS / 'frontier.png'}")


if __name__ == "__main__":
    main()
