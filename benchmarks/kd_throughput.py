"""Training throughput (images/s) of student-only training, KD with the teacher online and KD from
the teacher-output cache, measured side by side in one run on the same data.

    python benchmarks/kd_throughput.py [--data ROOT] [--steps 20]

Writes benchmarks/results/kd_throughput.json (cached_vs_online, cached_vs_student).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lightning as L  # noqa: E402
from common import data_root, machine, relative, write_result  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402

from distill.cache import TeacherCache  # noqa: E402
from distill.data import WasteDataModule  # noqa: E402
from distill.module import DistillModule  # noqa: E402
from distill.teacher import TeacherSpec  # noqa: E402


class Clock(Callback):
    """Wall time of training batches after the first ``skip`` (warm-up) ones."""

    def __init__(self, skip: int = 2):
        self.skip, self.start, self.images, self.seconds = skip, None, 0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.skip:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx >= self.skip:
            self.images += len(batch["label"])
            self.seconds = time.perf_counter() - self.start


def measure(dm, teacher: TeacherSpec | None, cached: bool, steps: int, cache_dir: str) -> float:
    L.seed_everything(0)
    module = DistillModule(dm.num_classes, student="tiny", teacher=teacher, class_counts=dm.class_counts)
    clock = Clock()
    callbacks = [clock] + ([TeacherCache(views=1, cache_dir=cache_dir)] if cached else [])
    trainer = L.Trainer(max_epochs=1, limit_train_batches=steps + clock.skip, limit_val_batches=0,
                        num_sanity_val_steps=0, logger=False, enable_checkpointing=False, callbacks=callbacks,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, dm)
    return clock.images / clock.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    root = data_root(args.data)
    dm = WasteDataModule(str(root), image_size=224, batch_size=args.batch_size, augment="strong")
    dm.setup("fit")
    with tempfile.TemporaryDirectory() as tmp:
        # ImageNet Lite0 with a fresh head stands in for the fine-tuned teacher: same cost
        import torch
        from distill.models import create_model

        weights = str(Path(tmp) / "teacher.pt")
        torch.save(create_model("efficientnet_lite0", dm.num_classes, weights="DEFAULT").state_dict(), weights)
        teacher = TeacherSpec("efficientnet_lite0", weights=weights)
        student = measure(dm, None, False, args.steps, tmp)
        online = measure(dm, teacher, False, args.steps, tmp)
        cached = measure(dm, teacher, True, args.steps, tmp)
    result = {"data": relative(root), "batch_size": args.batch_size, "steps": args.steps, "student": "tiny (64 px)",
              "teacher": "efficientnet_lite0 (224 px)", "machine": machine("teacher: auto"),
              "images_per_s": {"student_only": student, "kd_online": online, "kd_cached": cached},
              "cached_vs_online": cached / online, "cached_vs_student": cached / student}
    print(f"student only : {student:8.1f} img/s")
    print(f"KD online    : {online:8.1f} img/s")
    print(f"KD cached    : {cached:8.1f} img/s")
    print(f"cached / online  = {cached / online:.1f}x (target >= 20x)")
    print(f"student / cached = {student / cached:.2f}x (target <= 1.5x)")
    write_result("kd_throughput", result)


if __name__ == "__main__":
    main()
