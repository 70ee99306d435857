"""How much of what a fine-tuned teacher knows a small-input student can see: the teacher's macro F1 on the val and
held-out images as they are, shrunk to each student size and scaled back up (the detail a student of that size
never receives), and flip-averaged (``teacher.flip_average``).

    python benchmarks/teacher_views.py runs/trashnet/teacher                    # a pipeline's teacher stage
    python benchmarks/teacher_views.py runs/trashnet/teacher --sizes 64 96 --flip

It reads the stage's ``stage.json`` (its config and exported model file) and runs on the CPU in a minute or two.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import machine


def teacher_f1(teacher, loader, num_classes: int, size: int | None) -> float:
    """Macro F1 of ``teacher`` on ``loader``'s images, each first shrunk to ``size`` and scaled back (None: as is)."""
    from distill.evaluation import macro_f1
    from distill.preprocess import resize_uint8

    predictions, labels = [], []
    for batch in loader:
        images = batch["image"]
        if size is not None:
            images = resize_uint8(resize_uint8(images, size), images.shape[-1])
        predictions.append(teacher(images).argmax(1))
        labels.append(batch["label"])
    return macro_f1(torch.cat(labels).numpy(), torch.cat(predictions).numpy(), num_classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", type=Path, help="a teacher stage folder (holds stage.json)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96], help="student input sizes to simulate")
    parser.add_argument("--flip", action="store_true", help="also score the flip-averaged teacher")
    args = parser.parse_args()
    record_file = args.stage / "stage.json"
    if not record_file.is_file():
        parser.error(f"{record_file}: no such file (pass a pipeline's teacher stage folder)")
    from distill.stages import StageRecord

    try:
        record = StageRecord.load(record_file)  # its paths relative to the stage folder
    except (TypeError, ValueError) as err:
        parser.error(f"{record_file}: not a stage record ({err})")
    missing = [path for path in (record.config, record.model_file) if not Path(path).is_file()]
    if missing:
        parser.error(f"{record_file} names {missing}, which do not exist")

    from distill.checkpoint import load_trained
    from distill.cli import build_cli
    from distill.teacher import FrozenTeacher

    model, _ = load_trained(record.model_file)  # names the file when it is missing or damaged
    data = build_cli(["--config", record.config], run=False).datamodule
    data.setup("fit")
    data.setup("test")
    loaders = {"val": data.val_dataloader()}
    if data.holdout_set is not None:
        loaders["held-out"] = data.test_dataloader()
    settings = [("as is", None, False)] + [(f"shrunk to {s} px", s, False) for s in args.sizes]
    if args.flip:
        settings.append(("flip-averaged", None, True))
    print(f"teacher {record['config']} (input {record.get('input_size')} px); machine: {machine('32')}")
    print(f"{'images':<22}" + "".join(f"{name:>12}" for name in loaders))
    for label, size, flip in settings:
        teacher = FrozenTeacher(model, "32", flip_average=flip)
        scores = [teacher_f1(teacher, loader, data.num_classes, size) for loader in loaders.values()]
        print(f"{label:<22}" + "".join(f"{score:>12.4f}" for score in scores), flush=True)


if __name__ == "__main__":
    main()
