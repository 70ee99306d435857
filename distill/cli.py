"""The ``distill`` command: Lightning's CLI over ``DistillModule`` and ``WasteDataModule``.

    distill fit --config recipes/trashnet/student.yaml --data.root ../shared/data/trashnet
    distill predict --config recipes/trashnet/student.yaml --ckpt_path runs/x/checkpoints/best.ckpt
"""
from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import sys  # noqa: E402
import warnings  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning, module="fvcore")

from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.cli import LightningCLI  # noqa: E402

from distill.data import WasteDataModule  # noqa: E402
from distill.module import DistillModule  # noqa: E402
from distill.submission import SubmissionWriter  # noqa: E402
from distill.teacher_cache import TeacherCache  # noqa: E402


class DistillCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_counts", "model.class_counts", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": "val/f1", "checkpoint.mode": "max", "checkpoint.save_last": False,
                             "checkpoint.filename": "best", "checkpoint.auto_insert_metric_name": False})
        # last.ckpt after every epoch, improved or not (Lightning's save_last only follows a new best)
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults({"last_checkpoint.filename": "last", "last_checkpoint.monitor": None,
                             "last_checkpoint.save_top_k": 1, "last_checkpoint.enable_version_counter": False})
        parser.add_lightning_class_args(SubmissionWriter, "submission")
        parser.add_lightning_class_args(TeacherCache, "teacher_cache")


def build_cli(args: list[str] | None = None, run: bool = True) -> DistillCLI:
    """Run (or only build, ``run=False``) the CLI with ``args`` instead of ``sys.argv``."""
    if args is not None:  # called from Python: the caller's own command line is not ours to parse
        sys.argv = sys.argv[:1]
    return DistillCLI(DistillModule, WasteDataModule, seed_everything_default=0, args=args, run=run,
                      trainer_defaults={"deterministic": "warn", "log_every_n_steps": 10},
                      save_config_kwargs={"overwrite": True})


def main() -> None:
    build_cli()


if __name__ == "__main__":
    main()
