"""Where the seconds of a student epoch go: a Lightning fit with ``SimpleProfiler`` on TrashNet-shaped data, its
recorded durations summed into parts (loading, forward and loss, backward, optimiser, validation, checkpoints, the
rest) per epoch, after one warm-up epoch.

    python benchmarks/epoch_profile.py --arm kd --student tiny_orepa --batch-size 128 --val-every 10 --workers 0
    python benchmarks/epoch_profile.py --arm no_teacher_cached ...   # labels only, on the cache's views
    python benchmarks/epoch_profile.py --arm no_teacher_fresh ...    # labels only, fresh augmented views

It uses only APIs that the code before the speed work had too (``DistillModule``, ``TeacherCache``,
``WasteDataModule``), so the same script profiles an older checkout (``PYTHONPATH=<checkout>``) for a before/after
table; ``--json`` appends the parts to a file.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lightning as L  # noqa: E402
import torch  # noqa: E402
from common import data_root, machine, relative  # noqa: E402
from lightning.pytorch.callbacks import Callback, ModelCheckpoint  # noqa: E402
from lightning.pytorch.profilers import SimpleProfiler  # noqa: E402

import distill  # noqa: E402
from distill.cache import TeacherCache  # noqa: E402
from distill.data import WasteDataModule  # noqa: E402
from distill.module import DistillModule  # noqa: E402
from distill.teacher import TeacherSpec  # noqa: E402


class EpochWall(Callback):
    """Wall time from the start of epoch 1 (after the warm-up epoch) to the end of the fit."""

    def __init__(self):
        self.start, self.seconds = 0.0, 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            self.start = time.perf_counter()

    def on_fit_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.start


def parts(durations: dict[str, list[float]], skip_epochs: int, epochs: int, steps_per_epoch: int) -> dict[str, float]:
    """Seconds per epoch of each part, from the profiler's per-call durations (the warm-up epoch's calls dropped)."""
    def total(match: str, per: int) -> float:
        calls = [d for name, values in durations.items() if match in name for d in values]
        return sum(calls[skip_epochs * per:]) / epochs

    fwd = total(".training_step", steps_per_epoch)
    bwd = total(".backward", steps_per_epoch)
    opt = total(".optimizer_step", steps_per_epoch) - fwd - bwd  # the closure runs the step and backward inside
    validation = sum(d for name, values in durations.items()
                     if ("validation" in name or "val_next" in name) and "ModelCheckpoint" not in name for d in values)
    return {"loading": total("train_dataloader_next", steps_per_epoch), "forward_and_loss": fwd, "backward": bwd,
            "optimizer": opt, "validation": validation / epochs,
            "checkpoints": sum(d for name, values in durations.items() if "ModelCheckpoint" in name
                               for d in values) / epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data")
    parser.add_argument("--arm", choices=["kd", "no_teacher_cached", "no_teacher_fresh"], default="kd")
    parser.add_argument("--student", default="tiny_orepa")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--val-every", type=int, default=10)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10, help="epochs profiled, after one warm-up epoch")
    parser.add_argument("--label", default=None, help="name of this row in --json")
    parser.add_argument("--json", type=Path, help="append the result to this JSON file (a list)")
    args = parser.parse_args()
    root = data_root(args.data)
    from distill.models import create_model

    L.seed_everything(0)
    with tempfile.TemporaryDirectory() as tmp:
        dm = WasteDataModule(str(root), image_size=128, batch_size=args.batch_size, augment="strong",
                             num_workers=args.workers, holdout_fraction=0.15)
        weights = str(Path(tmp) / "teacher.pt")
        torch.save(create_model("efficientnet_lite0", dm.num_classes, weights="DEFAULT").state_dict(), weights)
        teacher = None if args.arm == "no_teacher_fresh" else TeacherSpec("efficientnet_lite0", weights=weights,
                                                                           input_size=128)
        module = DistillModule(dm.num_classes, student=args.student, teacher=teacher,
                               distill_weight=0.0 if args.arm == "no_teacher_cached" else 0.5,
                               class_counts=dm.class_counts, class_names=dm.class_names)
        wall, profiler = EpochWall(), SimpleProfiler()
        callbacks = [wall, ModelCheckpoint(tmp, "best", monitor="epoch", mode="max"),
                     ModelCheckpoint(tmp, "last", monitor=None, enable_version_counter=False)]
        if teacher is not None:
            callbacks.append(TeacherCache(views=args.views, cache_dir=tmp))
        trainer = L.Trainer(max_epochs=args.epochs + 1, check_val_every_n_epoch=args.val_every, logger=False,
                            default_root_dir=tmp, callbacks=callbacks, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0, profiler=profiler)
        trainer.fit(module, dm)
        steps = trainer.num_training_batches
        result = parts(profiler.recorded_durations, 1, args.epochs, steps)
    result["epoch"] = wall.seconds / args.epochs
    result["other"] = result["epoch"] - sum(v for k, v in result.items() if k != "epoch")
    row = {"label": args.label or f"{args.arm} {args.student} b{args.batch_size}",
           "code": relative(Path(distill.__file__).parent.parent),  # the checkout profiled
           "settings": {k: v for k, v in vars(args).items() if k not in ("json", "data", "label")},
           "images_per_epoch": len(dm.train_samples), "seconds_per_epoch": {k: round(v, 4) for k, v in result.items()},
           "machine": machine()}
    print(json.dumps(row["seconds_per_epoch"]))
    if args.json:
        rows = json.loads(args.json.read_text()) if args.json.exists() else []
        args.json.write_text(json.dumps(rows + [row], indent=2))


if __name__ == "__main__":
    main()
