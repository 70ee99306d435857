"""Score-driven student search: short KD runs of candidate students from one fine-tuned teacher (its
outputs cached once and shared), then the Pareto front of MACs vs macro F1 and the best by score.

    distill search --recipe trashnet --teacher-weights runs/trashnet/teacher/model.pt \
        --out runs/search --data-root ../shared/data/trashnet \
        --students nano micro tiny --sizes 56 64 80 --widths 0.75 1.0 --epochs 15 [--budget 8]

Writes ``search.csv`` (one row per finished candidate, appended as they finish), ``pareto.csv`` and
``search.png``. Interrupted searches resume: finished candidates are not trained again.
"""
from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

from distill.checkpoint import atomic_write_text
from distill.competition import F1_BASE, MACS_BASE, competition_score, describe
from distill.console import say
from distill.recipe import Recipe, merge
from distill.stages import run_fit

FIELDS = ["name", "student", "input_size", "width", "params", "macs_fvcore", "macs_competition", "val_f1",
          "score", "margin_over_0.5", "seconds", "model_file"]


@dataclass(frozen=True)
class Candidate:
    student: str
    input_size: int
    width: float

    @property
    def name(self) -> str:
        return f"{self.student}_s{self.input_size}_w{self.width:g}"


def candidates(students: list[str], sizes: list[int], widths: list[float], budget: int | None,
               seed: int) -> list[Candidate]:
    """The grid, or a seeded random sample of ``budget`` of it."""
    grid = [Candidate(s, z, w) for s, z, w in itertools.product(students, sizes, widths)]
    if budget is not None and budget < len(grid):
        grid = random.Random(seed).sample(grid, budget)
    return grid


def pareto_front(rows: list[dict]) -> list[dict]:
    """Rows no other row beats on both fewer-or-equal MACs and higher-or-equal F1 (one strictly)."""
    front = []
    for r in rows:
        dominated = any(o["macs_fvcore"] <= r["macs_fvcore"] and o["val_f1"] >= r["val_f1"] and
                        (o["macs_fvcore"] < r["macs_fvcore"] or o["val_f1"] > r["val_f1"]) for o in rows)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: r["macs_fvcore"])


def best_by_score(rows: list[dict], margin: float) -> dict | None:
    """Lowest score among candidates whose F1 stays ``margin`` above the 0.5 cliff (else among all)."""
    safe = [r for r in rows if r["val_f1"] >= 0.5 + margin]
    pool = safe or rows
    return min(pool, key=lambda r: r["score"]) if pool else None


def f1_for_score(score: float, macs: float, f1_base: float, macs_base: float) -> float | None:
    """The F1 at which a model of ``macs`` reaches ``score`` (inverse of the score formula), if any."""
    s_f1 = score - macs / macs_base
    if 0 <= s_f1 <= 1 - 0.5 / f1_base:
        return f1_base * (1 - s_f1)
    if s_f1 < 0:
        return f1_base * (1 - 2 * s_f1)
    return None


def plot(rows: list[dict], front: list[dict], best: dict | None, path: Path, f1_base: float, macs_base: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 5))
    macs = [r["macs_fvcore"] / 1e6 for r in rows]
    ax.scatter(macs, [r["val_f1"] for r in rows], c="tab:gray", label="candidates")
    ax.plot([r["macs_fvcore"] / 1e6 for r in front], [r["val_f1"] for r in front], "o-", c="tab:blue",
            label="Pareto front")
    if best is not None:
        ax.scatter([best["macs_fvcore"] / 1e6], [best["val_f1"]], s=160, facecolors="none", edgecolors="tab:red",
                   label=f"best score {best['score']:.3f}")
    xs = np.linspace(0, max(macs) * 1.2, 200)
    for level in (0.0, 0.1, 0.2, 0.3):
        ys = [f1_for_score(level, x * 1e6, f1_base, macs_base) for x in xs]
        pts = [(x, y) for x, y in zip(xs, ys) if y is not None and y <= 1]
        if pts:
            ax.plot(*zip(*pts), "--", lw=0.8, c="tab:orange")
            ax.annotate(f"score {level:g}", pts[-1], fontsize=7, color="tab:orange")
    ax.axhline(0.5, c="tab:red", lw=0.8, ls=":", label="F1 = 0.5 cliff")
    for r in rows:
        ax.annotate(r["name"], (r["macs_fvcore"] / 1e6, r["val_f1"]), fontsize=6, alpha=0.7)
    ax.set_xlabel("MMACs (fvcore)")
    ax.set_ylabel("val macro F1")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = list(csv.DictReader(path.open()))
    for r in rows:
        for key in ("input_size", "params", "macs_fvcore", "macs_competition"):
            r[key] = int(r[key])
        for key in ("width", "val_f1", "score", "margin_over_0.5", "seconds"):
            r[key] = float(r[key])
    return rows


def write_rows(path: Path, rows: list[dict]) -> None:
    """The rows as CSV (``csv.DictWriter``: a value with a comma or quote is quoted), written atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())


def run_search(recipe: Recipe, teacher_weights: str, out: Path, data_root: str | None, grid: list[Candidate],
               epochs: int, seed: int = 0, margin: float = 0.05, f1_base: float = F1_BASE,
               macs_base: float = MACS_BASE, settings: dict | None = None,
               cache_dir: str | None = None) -> dict:
    """Train every candidate of ``grid`` (skipping finished ones), then write the CSVs, the plot and a summary."""
    from distill.checkpoint import load_trained

    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "search.csv"
    rows = read_rows(csv_path)
    done = {r["name"] for r in rows}
    shared = merge({"data": {"root": data_root}} if data_root else {}, {
        "model": {"init_args": {"teacher": {"weights": teacher_weights}}},
        "teacher_cache": {"cache_dir": str(cache_dir or out / "teacher_cache")},
        "data": {"image_cache_dir": str(out / "image_cache")},
        "trainer": {"max_epochs": epochs, "enable_progress_bar": False}})
    shared = merge(shared, settings or {})
    for i, cand in enumerate(grid):
        if cand.name in done:
            say(f"[search] {cand.name}: done already, skipped")
            continue
        say(f"[search] candidate {i + 1}/{len(grid)}: {cand.name}")
        start = time.time()
        candidate = {"model": {"init_args": {"student": cand.student, "input_size": cand.input_size,
                                             "width": cand.width}}}
        record = run_fit(recipe.configs("student"), out / "runs" / cand.name, merge(shared, candidate), seed)
        model, meta = load_trained(record.model_file)
        info = describe(model, meta["input_size"])
        f1 = record.val_f1
        rows.append({"name": cand.name, "student": cand.student, "input_size": cand.input_size, "width": cand.width,
                     "params": info["params"], "macs_fvcore": info["macs_fvcore"],
                     "macs_competition": info["macs_competition"], "val_f1": f1,
                     "score": competition_score(f1, info["macs_fvcore"], f1_base, macs_base),
                     "margin_over_0.5": f1 - 0.5, "seconds": record.seconds or time.time() - start,
                     "model_file": record.model_file})
        write_rows(csv_path, rows)  # after each candidate: an interrupted search keeps what it finished
    front = pareto_front(rows)
    best = best_by_score(rows, margin)
    write_rows(out / "pareto.csv", front)
    if rows:
        plot(rows, front, best, out / "search.png", f1_base, macs_base)
    summary = {"candidates": len(rows), "pareto": [r["name"] for r in front], "best": best, "margin": margin}
    atomic_write_text(out / "search_summary.json", json.dumps(summary, indent=2))
    return summary


def run(args: argparse.Namespace) -> None:
    """``distill search`` (arguments: ``distill.command_args.search_parser``)."""
    recipe = Recipe.find(args.recipe)
    f1_base = F1_BASE if args.f1_base is None else args.f1_base
    macs_base = MACS_BASE if args.macs_base is None else args.macs_base
    grid = candidates(args.students, args.sizes, args.widths, args.budget, args.seed)
    summary = run_search(recipe, args.teacher_weights, args.out, args.data_root, grid, args.epochs, args.seed,
                         args.margin, f1_base, macs_base, cache_dir=args.teacher_cache_dir)
    best = summary["best"]
    if best is None:
        say("[search] no candidate finished")
        return
    say(f"[search] best by score: {best['name']} F1 {best['val_f1']:.4f}, {best['macs_fvcore']:,} MACs, "
          f"score {best['score']:.4f}; Pareto front: {summary['pareto']}")
    if args.retrain_epochs:
        best_cand = [Candidate(best["student"], int(best["input_size"]), float(best["width"]))]
        final = run_search(recipe, args.teacher_weights, args.out / "retrain", args.data_root, best_cand,
                           args.retrain_epochs, args.seed, args.margin, f1_base, macs_base,
                           cache_dir=args.teacher_cache_dir or str(args.out / "teacher_cache"))
        say(f"[search] retrained best: F1 {final['best']['val_f1']:.4f}, score {final['best']['score']:.4f}")

