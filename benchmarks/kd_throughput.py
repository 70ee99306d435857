"""Student training throughput (images/s), measured side by side in one run on one machine:

- ``bare``: the student's own forward + backward + AdamW step on one fixed batch (no loader, no Lightning), for
  the settings before this benchmark's change (``tiny_rep``: branches with a BN each, batch 64, AdamW per tensor)
  and after it (``tiny_orepa``: branches merged into one kernel before each conv, batch 128, fused AdamW);
- whole epochs of a Lightning fit with the new settings (validation every ``--val-every`` epochs and the
  checkpoints it writes included), KD from the teacher-output cache and the student without a teacher, the latter
  on the cache's views (``distill_weight: 0``, what ``distill pipeline --baseline-views cached`` runs) and on fresh
  augmented views (``teacher: null``, the default arm).

    python benchmarks/kd_throughput.py [--data ROOT] [--steps 30] [--epochs 20] [--views 8]

The TrashNet recipe's shapes: base size 128, EfficientNet-Lite0 teacher at 128 px, students at 64 px.
Writes benchmarks/results/kd_throughput.json: ``bare_speedup`` (new bare / old bare), ``kd_epochs_vs_bare`` and
``no_teacher_epochs_vs_bare`` (whole epochs / new bare).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lightning as L  # noqa: E402
import torch  # noqa: E402
from common import data_root, machine, relative, write_result  # noqa: E402
from lightning.pytorch.callbacks import Callback, ModelCheckpoint  # noqa: E402
from step_options import OPTIONS, measure  # noqa: E402

from distill.cache import TeacherCache  # noqa: E402
from distill.data import WasteDataModule  # noqa: E402
from distill.module import DistillModule  # noqa: E402
from distill.teacher import TeacherSpec  # noqa: E402

BEFORE = OPTIONS["tiny_rep b64 (before)"]
AFTER = OPTIONS["tiny_orepa b128 fused (after)"]


class EpochClock(Callback):
    """Wall time of whole training epochs (validation and checkpoints included) after the first (warm-up) one."""

    def __init__(self):
        self.start, self.images, self.seconds = 0.0, 0, 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch > 0:
            self.images += len(batch["label"])

    def on_fit_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.start


def measure_epochs(root: Path, teacher: TeacherSpec | None, distill_weight: float, cached: bool, workers: int,
                   args: argparse.Namespace, cache_dir: str) -> float:
    """Training images/s over whole epochs of a fit with the new settings, checkpointing as the CLI does."""
    L.seed_everything(0)
    dm = WasteDataModule(str(root), image_size=128, batch_size=AFTER.batch_size, augment="strong",
                         num_workers=workers, holdout_fraction=0.15)
    module = DistillModule(dm.num_classes, student=AFTER.student, teacher=teacher, distill_weight=distill_weight,
                           class_counts=dm.class_counts)
    clock = EpochClock()
    with tempfile.TemporaryDirectory() as run_dir:
        callbacks = [clock, ModelCheckpoint(run_dir, "best", monitor="epoch", mode="max"),
                     ModelCheckpoint(run_dir, "last", monitor=None, enable_version_counter=False)]
        if cached:
            callbacks.append(TeacherCache(views=args.views, cache_dir=cache_dir))
        trainer = L.Trainer(max_epochs=args.epochs + 1, check_val_every_n_epoch=args.val_every, logger=False,
                            default_root_dir=run_dir, callbacks=callbacks, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0)
        trainer.fit(module, dm)
    return clock.images / clock.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data")
    parser.add_argument("--steps", type=int, default=30, help="timed steps of each bare measurement")
    parser.add_argument("--epochs", type=int, default=20, help="whole epochs timed (after one warm-up epoch)")
    parser.add_argument("--val-every", type=int, default=10, help="validation (and checkpoints) every N epochs")
    parser.add_argument("--views", type=int, default=8, help="cached views per image (the recipe: 128)")
    parser.add_argument("--fresh-workers", type=int, default=2, help="loader workers of the fresh-view arm")
    args = parser.parse_args()
    root = data_root(args.data)
    from distill.models import create_model

    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        probe = WasteDataModule(str(root), image_size=128)
        # ImageNet Lite0 with a fresh head stands in for the fine-tuned teacher: same cost, same cache
        weights = str(Path(tmp) / "teacher.pt")
        torch.save(create_model("efficientnet_lite0", probe.num_classes, weights="DEFAULT").state_dict(), weights)
        teacher = TeacherSpec("efficientnet_lite0", weights=weights, input_size=128)
        for _ in range(2):  # interleaved, twice: the host's speed drifts; the better of each is kept
            for name, settings in (("bare before", BEFORE), ("bare after", AFTER)):
                rates[name] = max(rates.get(name, 0.0), measure(settings, args.steps)[0])
        rates["kd epochs (cached views)"] = measure_epochs(root, teacher, 0.5, True, 0, args, tmp)
        rates["no teacher epochs (cached views)"] = measure_epochs(root, teacher, 0.0, True, 0, args, tmp)
        rates["no teacher epochs (fresh views)"] = measure_epochs(root, None, 0.5, False, args.fresh_workers,
                                                                  args, tmp)
    bare = rates["bare after"]
    result = {"data": relative(root), "steps": args.steps, "epochs": args.epochs, "val_every": args.val_every,
              "before": asdict(BEFORE), "after": asdict(AFTER),
              "teacher": f"efficientnet_lite0 (128 px), cache of {args.views} views", "machine": machine("teacher: auto"),
              "images_per_s": rates,
              "bare_speedup": bare / rates["bare before"],
              "kd_epochs_vs_bare": rates["kd epochs (cached views)"] / bare,
              "no_teacher_epochs_vs_bare": rates["no teacher epochs (cached views)"] / bare,
              "no_teacher_fresh_epochs_vs_bare": rates["no teacher epochs (fresh views)"] / bare}
    for name, rate in rates.items():
        print(f"{name:<34}: {rate:8.1f} img/s")
    print(f"bare after / before = {result['bare_speedup']:.2f}; whole epochs / bare after: KD "
          f"{result['kd_epochs_vs_bare']:.2f}, no teacher {result['no_teacher_epochs_vs_bare']:.2f} (cached views), "
          f"{result['no_teacher_fresh_epochs_vs_bare']:.2f} (fresh views)")
    write_result("kd_throughput", result)


if __name__ == "__main__":
    main()
