"""Bad inputs, interrupted and repeated runs (issue: reliability)."""
import io
import json
import math

import lightning as L
import numpy as np
import pytest
import torch
from distill.models import Preprocess
from PIL import Image
from torch import nn

from distill.checkpoint import atomic_write, atomic_write_text, selected_val_f1
from distill.cli import build_cli
from distill.data import WasteDataModule, read_layout
from distill.module import DistillModule
from distill.preprocess import ImageLoadError, load_rgb

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def jpeg_bytes(size=(20, 16), color=(200, 10, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def messy(fresh_demo):
    """The demo data plus every kind of bad or unusual training file."""
    glass = fresh_demo / "train" / "Glass"
    (glass / "empty.jpg").write_bytes(b"")
    (glass / "truncated.jpg").write_bytes(jpeg_bytes((64, 64))[:200])
    (glass / "text.jpg").write_text("not an image at all")
    Image.new("L", (20, 20), 128).save(glass / "gray.jpg")
    Image.new("RGBA", (20, 30), (0, 255, 0, 128)).save(glass / "rgba.png")
    Image.new("P", (25, 20)).save(glass / "palette.png")
    Image.new("CMYK", (20, 20), (0, 200, 200, 0)).save(glass / "cmyk.jpg")
    Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(glass / "sixteen.png")
    Image.new("RGB", (1, 1), (9, 9, 9)).save(glass / "one_pixel.jpg")
    Image.new("RGB", (6000, 4000), (10, 200, 10)).save(glass / "huge.jpg", quality=50)
    (glass / ".DS_Store").write_bytes(b"\x00\x01")
    (glass / "notes.txt").write_text("ignore me")
    odd = fresh_demo / "train" / "Paper"
    (odd / "bottle café 1.jpg").write_bytes(jpeg_bytes())
    return fresh_demo


def test_messy_training_data_completes_with_one_warning(messy, tmp_path):
    dm = WasteDataModule(str(messy), image_size=32, batch_size=16)
    with pytest.warns(UserWarning, match="skipped 3 unreadable") as record:
        dm.setup("fit")
    message = str(record[0].message)
    for name in ("empty.jpg", "truncated.jpg", "text.jpg"):
        assert name in message
    names = {s.path.name for s in dm.train_samples}
    assert {"gray.jpg", "rgba.png", "palette.png", "cmyk.jpg", "sixteen.png", "one_pixel.jpg", "huge.jpg",
            "bottle café 1.jpg"} <= names
    assert ".DS_Store" not in names and "notes.txt" not in names
    module = DistillModule(dm.num_classes, student="nano", input_size=32)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        default_root_dir=tmp_path)
    trainer.fit(module, dm)  # the run completes
    assert trainer.state.finished


def test_huge_image_loads_downscaled_but_whole(tmp_path):
    Image.new("RGB", (6000, 4000), (10, 200, 10)).save(tmp_path / "big.jpg", quality=50)
    full = load_rgb(tmp_path / "big.jpg")
    draft = load_rgb(tmp_path / "big.jpg", min_side=128)
    assert full.shape == (4000, 6000, 3)
    assert min(draft.shape[:2]) >= 128 and draft.shape[1] / draft.shape[0] == pytest.approx(1.5, rel=0.01)


def test_empty_class_folder_is_a_clear_error(fresh_demo):
    (fresh_demo / "train" / "Newclass").mkdir()
    (fresh_demo / "val" / "Newclass").mkdir()
    with pytest.raises(ValueError, match=r"no images in train/ or val/: \['Newclass'\]"):
        read_layout(fresh_demo)


def test_non_ascii_class_names_and_files(fresh_demo, tmp_path):
    for split in ("train", "val"):
        folder = fresh_demo / split / "Plastik flaske ø"
        folder.mkdir()
        for i in range(3):
            (folder / f"billede {i} æ.jpg").write_bytes(jpeg_bytes(color=(i * 50, 0, 0)))
    (fresh_demo / "test" / "NoLabel" / "test billede ü.jpg").write_bytes(jpeg_bytes())
    out = tmp_path / "run"
    cli = build_cli(["fit", "--data.root", str(fresh_demo), "--data.image_size", "32", "--model.student", "nano",
                     "--model.input_size", "32", "--trainer.max_epochs", "1", "--trainer.default_root_dir",
                     str(out), *QUIET])
    assert "Plastik flaske ø" in cli.datamodule.class_names
    config = next(out.glob("lightning_logs/version_*/config.yaml"))
    build_cli(["predict", "--config", str(config), "--ckpt_path", cli.trainer.checkpoint_callback.best_model_path,
               "--submission.out_dir", str(out), "--trainer.logger", "false", *QUIET])
    import csv

    rows = list(csv.reader((out / "submission.csv").open(encoding="utf-8")))
    assert "test billede ü.jpg" in [r[0] for r in rows]


def test_missing_test_folder_and_mistyped_root(fresh_demo, tmp_path):
    import shutil

    shutil.rmtree(fresh_demo / "test")
    dm = WasteDataModule(str(fresh_demo), image_size=32)
    with pytest.raises(FileNotFoundError, match="test/NoLabel"):
        dm.setup("predict")
    with pytest.raises(FileNotFoundError, match="data root not found: .*no_such_root"):
        WasteDataModule(str(tmp_path / "no_such_root"))


def test_unreadable_test_image_is_an_error_unless_fallback(fresh_demo, tmp_path):
    test = fresh_demo / "test" / "NoLabel"
    (test / "bad1.jpg").write_text("nope")
    (test / "bad2.jpg").write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"2 unreadable image\(s\)(.|\n)*bad1.jpg(.|\n)*bad2.jpg"):
        WasteDataModule(str(fresh_demo), image_size=32).setup("predict")
    with pytest.raises(ValueError, match="predict_fallback='Gold'"):
        WasteDataModule(str(fresh_demo), predict_fallback="Gold")
    from distill.submission import SubmissionWriter

    dm = WasteDataModule(str(fresh_demo), image_size=32, predict_fallback="Metal")
    module = DistillModule(dm.num_classes, student="nano", input_size=32)
    with pytest.warns(UserWarning, match="predict_fallback='Metal'"):
        L.Trainer(callbacks=[SubmissionWriter(str(tmp_path))], logger=False, enable_progress_bar=False).predict(module, dm)
    rows = dict(line.split(",") for line in (tmp_path / "submission.csv").read_text().splitlines()[1:])
    n_images = len([p for p in test.iterdir()])
    assert len(rows) == n_images and rows["bad1.jpg"] == "Metal" and rows["bad2.jpg"] == "Metal"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["predict_fallback"] == "Metal" and report["unreadable_images"] == ["bad1.jpg", "bad2.jpg"]


class Interrupt(L.Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == 1:
            raise RuntimeError("killed mid-epoch")


def test_interrupted_fit_resumes_from_last_checkpoint(demo_root, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    def run(callbacks, ckpt_path=None):
        L.seed_everything(0)
        dm = WasteDataModule(str(demo_root), image_size=32, batch_size=8)
        module = DistillModule(dm.num_classes, student="nano", input_size=32)
        checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/f1", mode="max", filename="best")
        last = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last", enable_version_counter=False)  # as the CLI
        trainer = L.Trainer(max_epochs=4, logger=False, enable_progress_bar=False, default_root_dir=tmp_path,
                            callbacks=[checkpoint, last, *callbacks])
        trainer.fit(module, dm, ckpt_path=ckpt_path)
        return trainer, module, checkpoint

    with pytest.raises(RuntimeError, match="killed mid-epoch"):
        run([Interrupt(epoch=2)])
    last = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1  # epochs 0 and 1 finished: only the interrupted epoch is lost
    best_before = selected_val_f1(last)
    trainer, module, checkpoint = run([], ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert trainer.current_epoch == 4 and trainer.global_step > last["global_step"]
    assert float(checkpoint.best_model_score) >= best_before  # history of the best F1 kept across the restart
    assert checkpoint.best_model_path.endswith("best.ckpt")


class NaNStudent(nn.Module):
    def __init__(self):
        super().__init__()
        self.preprocess = Preprocess(16)
        self.fc = nn.Linear(3, 9)

    def forward(self, x):
        return self.fc(x.mean((2, 3))) * math.nan


def test_non_finite_loss_stops_with_epoch_and_step(demo_root, tmp_path):
    dm = WasteDataModule(str(demo_root), image_size=16, batch_size=8)
    module = DistillModule(dm.num_classes, student=NaNStudent())
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        num_sanity_val_steps=0, default_root_dir=tmp_path)
    with pytest.raises(FloatingPointError, match="epoch 0, step 0"):
        trainer.fit(module, dm)


@pytest.mark.parametrize("option,value,message", [
    ("--model.distill_loss.temperature", "-1", "temperature must be > 0"),
    ("--model.distill_weight", "1.5", "distill_weight must be in"),
    ("--model.teacher.name", "resnet_typo", "teacher.name='resnet_typo'"),
    ("--model.student", "hugenet", "student: unknown model 'hugenet'"),
    ("--model.input_size", "8", "input_size=8"),
])
def test_bad_cli_option_fails_before_training(demo_root, tmp_path, option, value, message):
    with pytest.raises(ValueError, match=message):
        build_cli(["fit", "--data.root", str(demo_root), option, value, "--trainer.default_root_dir", str(tmp_path),
                   *QUIET])
    assert not list(tmp_path.glob("**/*.ckpt"))


@pytest.mark.parametrize("option,value,choices", [
    ("--data.augment", "medium", "'none', 'light', 'strong'"),
    ("--model.optimizer", "adam", "'adamw', 'sgd'"),
    ("--model.schedule", "step", "'cosine', 'onecycle', 'none'"),
    ("--teacher_cache.mix", "blend", "'none', 'mixup', 'cutmix', 'both'"),
])
def test_an_option_with_fixed_choices_is_rejected_when_parsed(demo_root, tmp_path, capsys, option, value, choices):
    """Literal hints: the parser names the option and its choices, before any object is built."""
    with pytest.raises(SystemExit) as stopped:
        build_cli(["fit", "--data.root", str(demo_root), option, value, "--trainer.default_root_dir", str(tmp_path),
                   *QUIET])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and f"{option.split('.')[-1]}\"" in err and choices in err and value in err
    assert not list(tmp_path.glob("**/*.ckpt"))


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "submission.csv"
    atomic_write_text(target, "image,label\n")

    def crash(tmp):
        with open(tmp, "w") as f:
            f.write("half a fi")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, crash)
    assert target.read_text() == "image,label\n"  # the finished file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["submission.csv"]  # no temporary left behind
