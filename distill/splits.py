"""Seeded splits of labelled samples: the held-out split (by each file's path alone) and a stratified
validation split."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from distill.layout import Sample


def holdout_split(samples: list[Sample], root: Path, fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Carve a held-out split off ``samples``: in each class, the ``round(fraction * n_c)`` images first in
    the order of ``sha256(seed | path relative to root)``. Returns (kept, held out).

    Whether an image is held out depends only on its own path, its class and ``seed``: not on the run's
    seed, ``val_mode`` or the other stages, so the teacher, every student and every seed hold out the same
    images (and adding an image elsewhere moves at most one image of its class)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"data.holdout_fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return list(samples), []

    def rank(sample: Sample) -> str:
        relative = sample.path.relative_to(root).as_posix()
        return hashlib.sha256(f"{seed}|{relative}".encode()).hexdigest()

    held: set[Path] = set()
    for label in sorted({s.label for s in samples}):
        members = sorted((s for s in samples if s.label == label), key=rank)
        n = int(round(fraction * len(members)))
        held.update(s.path for s in members[: min(n, len(members) - 1)])
    return [s for s in samples if s.path not in held], sorted((s for s in samples if s.path in held),
                                                                key=lambda s: (s.label, s.path))


def stratified_split(labels: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded stratified split of indices: ``round(fraction * n_c)`` of each class (at least 1 when the
    class has 2 or more images) go to the second list."""
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    for label in sorted(by_class):
        idx = np.array(by_class[label])
        rng.shuffle(idx)
        n_val = int(round(fraction * len(idx)))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        else:
            n_val = 0
        val_idx += idx[:n_val].tolist()
        train_idx += idx[n_val:].tolist()
    return sorted(train_idx), sorted(val_idx)


def cross_fit_fold(sample: Sample, root: Path, folds: int, seed: int) -> int:
    """The fold (``0 .. folds-1``) of a training image for cross-fitted teachers: ``sha256(seed | cross-fit | path
    relative to root)`` modulo ``folds``. It depends only on the file's own path and ``seed``, so a teacher's
    fine-tune (which leaves its fold out) and the cache fill (which routes each image to the teacher that left
    it out) agree, whatever other images were dropped or added."""
    relative = sample.path.relative_to(root).as_posix()
    return int(hashlib.sha256(f"{seed}|cross-fit|{relative}".encode()).hexdigest(), 16) % folds


def check_cross_fit(fold: int | None, folds: int) -> None:
    """``data.cross_fit_fold`` / ``data.cross_fit_folds``, named in the error."""
    if folds < 2:
        raise ValueError(f"data.cross_fit_folds must be >= 2, got {folds}")
    if fold is not None and not 0 <= fold < folds:
        raise ValueError(f"data.cross_fit_fold={fold}: choose 0 .. {folds - 1} (data.cross_fit_folds={folds}) or null")
