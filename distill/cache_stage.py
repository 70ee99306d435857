"""The teacher-output cache as a stage of its own: ``distill cache`` (and the pipeline, before any student
trains) fills it from a fine-tuned teacher file; every student ``fit`` of the same settings then reads it.

    distill cache --config recipes/base/student.yaml --config recipes/trashnet/student.yaml \
        --data.root ../shared/data/trashnet --model.teacher.weights runs/x/teacher/model.pt \
        --teacher_cache.cache_dir runs/x/teacher_cache

It takes the options of ``distill fit`` (they say which images, which teacher, which student size, how many
views) and runs no training. A stopped fill resumes when the same command runs again.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill.console import say

if TYPE_CHECKING:
    from distill.cache import ViewCache


@dataclass
class CacheRecord:
    """What a cache stage leaves in ``<cache_dir>/stage.json``."""

    stem: str  # the cache's files: <stem>.record.pt, <stem>.logits.npy, <stem>.<S>px-hwc-u8.npy
    views: int
    images: int
    seconds: float  # wall time of this stage (0 fill when the cache was complete already)
    fill_seconds: float
    # macro F1 of the teacher's argmax over every cached view against the image's label (None for mixed views):
    # what the student's targets are worth on the views it trains on; beside its own training-view F1 it says
    # whether the student under-fits its teacher or the teacher's targets limit it
    teacher_view_f1: float | None = None
    # what its outputs say about the classes it did not pick (``distill.evaluation.offclass_entropy``; 1.0: nothing)
    teacher_offclass_entropy: float | None = None

    def save(self, path: Path) -> None:
        from distill.checkpoint import atomic_write_text

        atomic_write_text(path, json.dumps(asdict(self), indent=2))


def fill_cache(args: list[str] | dict[str, Any], config_files: list[str | Path] = ()) -> CacheRecord | None:
    """Fill the teacher-output cache a ``fit`` with ``args`` on ``config_files`` would read, without training.
    None when that fit has nothing to cache (no teacher, or ``teacher_cache.enabled: false``)."""
    import numpy as np

    from distill.cli import build_cli
    from distill.evaluation import offclass_entropy

    start = time.time()
    cli = build_cli(args, run=False, config_files=config_files)
    callback, datamodule = cli.config_init["teacher_cache"], cli.datamodule  # its teacher and size: from the model
    if not callback.enabled or callback.teacher is None:
        return None
    datamodule.setup("fit")
    filled = callback.fill(datamodule, cli.trainer.default_root_dir, cli.trainer.strategy.root_device)
    cache = filled.cache
    path = cache.stem.parent / "stage.json"
    # the last fill's time, as its progress files recorded it (they travel with the folder): this run's or a reused one's
    fill_seconds = cache.fill_seconds()
    view_f1 = teacher_view_f1(cache, datamodule.num_classes)
    offclass = offclass_entropy(np.load(cache.logits_file, mmap_mode="r")) if datamodule.num_classes > 2 else None
    record = CacheRecord(stem=str(cache.stem), views=cache.views, images=cache.n, seconds=time.time() - start,
                         fill_seconds=fill_seconds, teacher_view_f1=view_f1, teacher_offclass_entropy=offclass)
    record.save(path)
    say(f"[cache] {cache.n} images x {cache.views} views in {cache.stem.parent} "
        + (f"filled in {filled.fill_seconds:.0f} s" if filled.fill_seconds else "(complete already: reused)")
        + (f"; the teacher's macro F1 on these views {view_f1:.4f}" if view_f1 is not None else "")
        + (f", its off-class entropy {offclass:.3f} (1.0: it says nothing of the classes it did not pick)"
           if offclass is not None else ""))
    return record


def teacher_view_f1(cache: "ViewCache", num_classes: int) -> float | None:
    """Macro F1 of the teacher's cached logits (argmax) on every view against its image's label; None when views
    are mixed (a mixed view has two labels)."""
    import numpy as np

    from distill.evaluation import macro_f1

    if cache.mix.mode != "none":
        return None
    logits = np.load(cache.logits_file, mmap_mode="r")  # N x views x classes
    labels = np.array([sample.label for sample in cache.source.samples])
    return macro_f1(np.repeat(labels, cache.views), np.asarray(logits).argmax(-1).reshape(-1), num_classes)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("Options: those of `distill fit --help`.")
        return
    if fill_cache(argv) is None:
        raise ValueError("nothing to cache: this config has no teacher (model.init_args.teacher) or "
                         "teacher_cache.enabled is false")
