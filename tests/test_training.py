import csv
import json
import math
import textwrap
import warnings

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from distill.models import Preprocess, create_model
from torch import nn

from distill.checkpoint import load_trained, selected_val_f1
from distill.cli import build_cli
from distill.competition import competition_macs
from distill.complexity import count_macs
from distill.data import WasteDataModule
from distill.losses import KD, DistillLoss, Focal, kd_loss
from distill.module import DistillModule
from distill.submission import RuleViolationError, SubmissionWriter
from distill.teacher import TeacherSpec

FAST = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.logger", "false"]


def tiny_teacher(num_classes: int) -> nn.Module:
    return create_model("micro", num_classes, input_size=48)


def fit_module(root, tmp_path, seed=0, teacher=None, epochs=2, **model_kwargs):
    L.seed_everything(seed)
    dm = WasteDataModule(str(root), image_size=48, batch_size=16, augment="strong")
    module = DistillModule(dm.num_classes, student="nano", input_size=32, teacher=teacher,
                           class_counts=dm.class_counts, class_names=dm.class_names, **model_kwargs)
    trainer = L.Trainer(max_epochs=epochs, default_root_dir=tmp_path, enable_progress_bar=False, logger=False,
                        enable_model_summary=False, deterministic=True, enable_checkpointing=False)
    trainer.fit(module, dm)
    return module, trainer, dm


def test_teacher_frozen_eval_and_outside_optimizer(demo_root, tmp_path):
    teacher = tiny_teacher(9)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    module, trainer, _ = fit_module(demo_root, tmp_path, teacher=teacher, epochs=1)
    module.train()
    assert module.teacher.model is teacher and not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    optimised = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in teacher.parameters()}
    assert not any(k.startswith("teacher") for k in module.state_dict())  # never part of the student's checkpoint
    # BN running stats and weights of the teacher did not move during training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_teacher_gets_its_own_input_size(demo_root):
    seen = {}

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.preprocess = Preprocess(40)
            self.fc = nn.Linear(3, 9)

        def forward(self, x):
            seen["shape"] = tuple(x.shape)
            return self.fc(x.mean((2, 3)))

    module = DistillModule(9, student="nano", input_size=32, teacher=Probe())
    module.build_teacher()
    module.teacher_logits(torch.randint(0, 255, (4, 3, 48, 48), dtype=torch.uint8))
    assert seen["shape"] == (4, 3, 40, 40)


def test_loss_is_the_weighted_sum_of_named_terms():
    torch.manual_seed(0)
    module = DistillModule(4, student="nano", input_size=32, distill_loss=KD(2.0), distill_weight=0.25,
                           label_loss=Focal(gamma=0.0, alpha="none"))
    s, t, y = torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0, 1, 2])
    out = module.combine(s, y, t)
    expected = 0.25 * kd_loss(s, t, 2.0) + 0.75 * F.cross_entropy(s, y)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(out) == {"loss", "kd", "focal"}
    assert set(module.combine(s, y, None)) == {"loss", "focal"}  # no teacher: the label loss alone
    # distill_weight 0 (the no-teacher arm on the cache's views): cached logits in the batch are never read
    labels_only = DistillModule(4, student="nano", input_size=32, distill_weight=0.0,
                                label_loss=Focal(gamma=0.0, alpha="none"))
    out = labels_only.losses(s, y, torch.zeros(3, 3, 32, 32), {"teacher_logits": torch.full((3, 4), float("nan"))})
    assert set(out) == {"loss", "focal"} and out["loss"].item() == pytest.approx(F.cross_entropy(s, y).item(), rel=1e-6)


def test_same_seed_same_f1_and_weights(demo_root, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a, trainer_a, _ = fit_module(demo_root, tmp_path / "a", seed=3)
    assert not [w for w in caught if "before the ``update``" in str(w.message)]  # every metric computed was updated
    b, trainer_b, _ = fit_module(demo_root, tmp_path / "b", seed=3)
    metrics = trainer_a.callback_metrics
    assert float(metrics["val/f1"]) == float(trainer_b.callback_metrics["val/f1"])
    # per-class F1 logged under each class's name; macro F1 is their mean
    per_class = [float(metrics[f"val/f1_{name}"]) for name in a.hparams.class_names]
    assert len(per_class) == 9 and float(metrics["val/f1"]) == pytest.approx(sum(per_class) / 9, abs=1e-6)
    for (k, va), vb in zip(a.student.state_dict().items(), b.student.state_dict().values()):
        assert torch.equal(va, vb), k


def test_bad_options_name_the_option():
    with pytest.raises(ValueError, match="temperature"):
        KD(temperature=0)
    with pytest.raises(ValueError, match="distill_weight"):
        DistillModule(9, distill_weight=1.2)
    with pytest.raises(ValueError, match="teacher.name='resnet9000'"):
        TeacherSpec("resnet9000")
    with pytest.raises(ValueError, match="student: unknown model 'giant'; registered:"):
        DistillModule(9, student="giant")
    with pytest.raises(ValueError, match="input_size=8"):
        DistillModule(9, student="tiny", input_size=8)
    with pytest.raises(ValueError, match="teacher.precision='fp8'"):
        TeacherSpec(precision="fp8")


def test_cli_fit_then_predict_writes_complete_submission(demo_root, tmp_path):
    out = tmp_path / "run"
    cli = build_cli(["fit", "--data.root", str(demo_root), "--data.image_size", "48", "--data.batch_size", "16",
                     "--model.student", "nano", "--model.input_size", "32", "--model.teacher.name", "resnet18",
                     "--model.teacher.input_size", "32", "--trainer.max_epochs", "1", "--trainer.default_root_dir",
                     str(out), "--trainer.enable_progress_bar", "false", "--teacher_cache.backend", "torch",
                     "--teacher_cache.views", "2"])
    best = cli.trainer.checkpoint_callback.best_model_path
    assert best.endswith("best.ckpt")
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    assert not any(k.startswith("teacher") for k in ckpt["state_dict"])  # teacher not saved with the student
    assert ckpt["base_size"] == 48 and ckpt["input_size"] == 32
    config = next(out.glob("lightning_logs/version_*/config.yaml"))
    build_cli(["predict", "--config", str(config), "--ckpt_path", best, "--submission.out_dir", str(out), *FAST])
    rows = list(csv.reader((out / "submission.csv").open()))
    images = sorted(p.name for p in (demo_root / "test" / "NoLabel").iterdir())
    assert rows[0] == ["image", "label"]
    assert [r[0] for r in rows[1:]] == images
    classes = sorted(p.name for p in (demo_root / "train").iterdir())
    assert all(r[1] in classes for r in rows[1:])
    report = json.loads((out / "report.json").read_text())
    assert report["images"] == len(images) and report["rules_ok"] is True
    student, _ = load_trained(best)
    assert report["macs_fvcore"] == count_macs(student, 32).total and report["input_size"] == 32
    assert report["macs_competition"] == competition_macs(student, 32)
    assert report["val_macro_f1"] is not None and report["score"] is not None

    # a second predict does not overwrite the finished submission
    build_cli(["predict", "--config", str(config), "--ckpt_path", best, "--submission.out_dir", str(out),
               "--submission.layout", "competition", *FAST])
    competition = json.loads((out / "version_1" / "submission.csv").read_text())
    assert competition["macs"] == report["macs_competition"] and sorted(competition["submission"]) == images

    # the trained student loads as a plain nn.Module without Lightning
    student, meta = load_trained(best)
    assert isinstance(student, nn.Module) and meta["input_size"] == 32 and meta["class_names"] == classes
    assert meta["base_size"] == 48

    # the report card reads the validation images the way training did: the same macro F1
    from distill.report import report_card

    card = report_card(student, WasteDataModule(str(demo_root), image_size=meta["base_size"], augment="none"),
                       tmp_path / "card")
    assert card["split"] == "val" and card["macro_f1"] == pytest.approx(selected_val_f1(ckpt), abs=1e-6)


class FunctionalStudent(nn.Module):
    def __init__(self):
        super().__init__()
        self.preprocess = Preprocess(32)
        self.w = nn.Parameter(torch.randn(9, 3))

    def forward(self, x):
        return F.linear(x.mean((2, 3)), self.w)


def test_predict_refuses_rule_breaking_model(demo_root, tmp_path):
    dm = WasteDataModule(str(demo_root), image_size=32)
    module = DistillModule(9, student=FunctionalStudent())
    writer = SubmissionWriter(out_dir=str(tmp_path))
    trainer = L.Trainer(callbacks=[writer], logger=False, enable_progress_bar=False)
    with pytest.raises(RuleViolationError, match="computed outside standard"):
        trainer.predict(module, dm)
    assert not (tmp_path / "submission.csv").exists()
    # explicit override writes it, and the report records the violation
    writer = SubmissionWriter(out_dir=str(tmp_path), allow_rule_violations=True)
    L.Trainer(callbacks=[writer], logger=False, enable_progress_bar=False).predict(module, dm)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["rules_ok"] is False and report["rule_violations"]


@pytest.mark.parametrize("with_teacher", [False, True])
def test_mixup_of_identical_samples_equals_plain_loss(with_teacher):
    """Mixing a batch of one repeated sample changes nothing (the online teacher sees the mixed image, which is
    the same image); a batch of different samples gives a different loss."""
    torch.manual_seed(0)
    teacher = tiny_teacher(9)
    module = DistillModule(9, student="nano", input_size=32, teacher=teacher if with_teacher else None, mixup=0.4,
                           distill_loss=KD(3.0), distill_weight=0.7)
    module.build_teacher()
    with torch.no_grad():  # random weights so that the outputs depend on the input
        for p in list(module.student.parameters()) + list(teacher.parameters()):
            p.normal_(0, 0.5)
    module.eval()  # BN in eval: the student's output per sample does not depend on the batch
    same = torch.randint(0, 255, (1, 3, 48, 48), dtype=torch.uint8).repeat(6, 1, 1, 1)
    labels = torch.full((6,), 4)
    plain = module.combine(module(same), labels, module.teacher_logits(same))
    mixed = module.mixed_losses(same, labels)
    assert set(plain) == set(mixed) == ({"loss", "focal", "kd"} if with_teacher else {"loss", "focal"})
    for key in plain:
        assert torch.allclose(plain[key], mixed[key], atol=1e-5), key
    varied = torch.randint(0, 255, (6, 3, 48, 48), dtype=torch.uint8)
    assert not torch.allclose(module.mixed_losses(varied, torch.arange(6))["loss"], plain["loss"])


def test_mixup_trains_on_mixed_images_and_rejects_negative(demo_root, tmp_path):
    with pytest.raises(ValueError, match="mixup"):
        DistillModule(9, mixup=-1)
    cached = {"image": torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "label": torch.tensor([0, 1]),
              "teacher_logits": torch.zeros(2, 2)}  # a batch of the teacher cache: its logits are of unmixed views
    with pytest.raises(ValueError, match="teacher_cache.mix"):
        DistillModule(2, student="nano", input_size=32, mixup=0.4).training_step(cached, 0)
    _, trainer, _ = fit_module(demo_root, tmp_path, teacher=tiny_teacher(9), epochs=1, mixup=0.4)
    assert torch.isfinite(trainer.callback_metrics["train/loss"]) and "val/f1" in trainer.callback_metrics
    # the student sees convex mixtures of the batch's images: of a black and a white one, shares that add to 1
    module = DistillModule(2, student="nano", input_size=32, teacher=None, mixup=0.4)
    seen = []
    module.net.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    images = torch.stack([torch.zeros(3, 32, 32, dtype=torch.uint8), torch.full((3, 32, 32), 255, dtype=torch.uint8)])
    batch = {"image": images, "label": torch.tensor([0, 1]), "index": torch.arange(2)}
    module(images)
    black, white = seen[0][0], seen[0][1]
    mixed_both = False
    for seed in range(10):
        torch.manual_seed(seed)
        assert torch.isfinite(module.training_step(batch, 0))
        share = [float(((seen[-1][i] - black) / (white - black)).mean()) for i in range(2)]
        assert share[0] + share[1] == pytest.approx(1.0, abs=1e-4)
        mixed_both |= all(0.01 < v < 0.99 for v in share)
    assert mixed_both


class HalfKD(DistillLoss):
    """A distillation method defined outside the library: half of Hinton KD."""

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        self.temperature = temperature

    def forward(self, student_logits, teacher_logits, labels):
        return {"half_kd": 0.5 * kd_loss(student_logits, teacher_logits, self.temperature)}


def test_a_loss_defined_in_a_test_file_is_usable_from_yaml(demo_root, tmp_path):
    config = tmp_path / "loss.yaml"
    config.write_text(textwrap.dedent(f"""
        model:
          init_args:
            distill_loss:
              class_path: {__name__}.HalfKD
              init_args:
                temperature: 3.0
        """))
    cli = build_cli(["fit", "--config", str(config), "--data.root", str(demo_root), "--data.image_size", "32",
                     "--model.student", "nano", "--model.input_size", "32", "--model.teacher.name", "resnet18",
                     "--model.teacher.input_size", "32", "--trainer.max_epochs", "1", "--teacher_cache.enabled",
                     "false", "--trainer.default_root_dir", str(tmp_path / "run"), *FAST])
    loss = cli.model.distill_loss
    assert isinstance(loss, HalfKD) and loss.temperature == 3.0
    assert "train/half_kd" in cli.trainer.callback_metrics


def test_time_estimate_after_a_short_probe(demo_root, tmp_path, capsys):
    from distill.callbacks import TimeEstimate

    dm = WasteDataModule(str(demo_root), image_size=32, batch_size=4)
    module = DistillModule(dm.num_classes, student="nano", input_size=32)
    estimate = TimeEstimate(probe_batches=2)
    L.Trainer(max_epochs=3, callbacks=[estimate], logger=False, enable_checkpointing=False, enable_progress_bar=False,
              num_sanity_val_steps=0, default_root_dir=tmp_path).fit(module, dm)
    assert estimate.estimate_seconds is not None and estimate.estimate_seconds > 0
    printed = capsys.readouterr().out
    assert "[estimate]" in printed and "for the 3 epoch(s) left" in printed
    with pytest.raises(ValueError, match="probe_batches"):
        TimeEstimate(probe_batches=-1)


def test_warm_up_cosine_schedule_is_the_closed_form():
    """SequentialLR(LinearLR, CosineAnnealingLR): step s < warm gives (s + 1) / warm, then cosine to zero."""
    from types import SimpleNamespace
    from unittest import mock

    module = DistillModule(4, student="nano", input_size=32, warmup_epochs=2, lr=1.0)
    total, epochs = 40, 10
    fake = SimpleNamespace(estimated_stepping_batches=total, max_epochs=epochs)
    with mock.patch.object(type(module), "trainer", new_callable=mock.PropertyMock, return_value=fake):
        config = module.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    warm = 2 * total // epochs
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [(s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / (total - warm)))
                for s in range(total)]
    assert lrs == pytest.approx(expected, abs=1e-9)


def test_logged_training_loss_is_the_epochs_batch_weighted_mean(demo_root, tmp_path):
    """train/* figures are logged once an epoch: the mean over the epoch's images of every step's terms."""

    class Recording(L.Callback):
        def __init__(self):
            self.steps: list[tuple[float, int]] = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.steps.append((float(outputs["loss"]), len(batch["label"])))

    L.seed_everything(0)
    dm = WasteDataModule(str(demo_root), image_size=48, batch_size=7, augment="none")
    module = DistillModule(dm.num_classes, student="nano", input_size=32, class_counts=dm.class_counts)
    record = Recording()
    trainer = L.Trainer(max_epochs=1, default_root_dir=tmp_path, enable_progress_bar=False, logger=False,
                        enable_model_summary=False, enable_checkpointing=False, callbacks=[record])
    trainer.fit(module, dm)
    assert len(record.steps) > 1
    expected = sum(loss * n for loss, n in record.steps) / sum(n for _, n in record.steps)
    assert float(trainer.callback_metrics["train/loss"]) == pytest.approx(expected, rel=1e-5)
    assert 0 <= float(trainer.callback_metrics["train/f1"]) <= 1


def test_the_api_example_runs_short(tmp_path):
    """``examples/api_example.py`` (its short length, what a newcomer runs first) trains, writes a model file and
    predicts image files with it."""
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "api_example.py"
    result = subprocess.run([sys.executable, str(example), "--out", str(tmp_path)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert any(line.startswith("student: 325,728 MACs") and "rules: ok" in line for line in lines)
    assert sum(line.startswith("img_") and line.endswith(")") for line in lines) == 5
    assert lines[-1] == f"wrote {tmp_path / 'model.pt'}" and (tmp_path / "model.pt").stat().st_size > 0


def test_plain_lightning_use_takes_class_names_and_counts_from_the_data_module(demo_root):
    """Without the CLI's linked arguments, ``setup`` reads the class names and counts of the trainer's data module:
    the focal loss gets its class weights and a checkpoint records the names."""
    from distill.losses.focal import class_alpha

    dm = WasteDataModule(str(demo_root), image_size=48, batch_size=16)
    module = DistillModule(dm.num_classes, student="nano", input_size=32, teacher=None)
    assert module.hparams.class_names is None and module.label_loss.alpha is None
    L.Trainer(fast_dev_run=1, logger=False, enable_progress_bar=False).fit(module, dm)
    assert module.hparams.class_names == dm.class_names and module.hparams.class_counts == dm.class_counts
    assert module.hparams.base_size == 48  # recorded in its checkpoints
    assert torch.equal(module.label_loss.alpha, class_alpha(dm.class_counts, "effective"))
    with pytest.raises(ValueError, match="num_classes=4, but the data module has 9 classes"):
        L.Trainer(fast_dev_run=1, logger=False, enable_progress_bar=False).fit(
            DistillModule(4, student="nano", input_size=32, teacher=None), dm)


def test_a_resumed_fit_counts_the_seconds_of_its_earlier_runs(tmp_path, monkeypatch):
    """StageClock's seconds ride in every checkpoint: a fit resumed from last.ckpt counts on from them."""
    import types

    import torch

    import distill.callbacks as callbacks

    now = [1000.0]
    monkeypatch.setattr(callbacks, "time", types.SimpleNamespace(time=lambda: now[0]))
    first = callbacks.StageClock()
    now[0] += 100.0  # the first run, up to its last checkpoint
    torch.save({"callbacks": {"StageClock": first.state_dict()}}, tmp_path / "last.ckpt")
    now[0] += 30.0  # cut off: the rest of that epoch is lost
    resumed = callbacks.StageClock()
    resumed.load_state_dict(torch.load(tmp_path / "last.ckpt", weights_only=True)["callbacks"]["StageClock"])
    now[0] += 20.0
    assert resumed.seconds == 120.0 and first.seconds == 150.0


def test_averaged_weights_are_what_a_stage_exports(demo_root, tmp_path):
    """Lightning's EMAWeightAveraging in trainer.callbacks: checkpoints hold the averaged weights, the model ends
    training with them, and the exported student (distill.checkpoint.load_trained) is that plain student."""
    import torch

    from distill.checkpoint import load_trained

    out = tmp_path / "run"
    cli = build_cli({"data": {"root": str(demo_root), "image_size": 32, "batch_size": 16},
                     "model": {"init_args": {"student": "nano", "input_size": 32, "teacher": None}},
                     "trainer": {"max_epochs": 2, "limit_train_batches": 3, "default_root_dir": str(out),
                                 "enable_progress_bar": False, "logger": False, "callbacks": [
                                     {"class_path": "lightning.pytorch.callbacks.EMAWeightAveraging",
                                      "init_args": {"decay": 0.5}}]},
                     "checkpoint": {"monitor": "epoch", "mode": "max", "dirpath": str(out / "ck")},
                     "last_checkpoint": {"dirpath": str(out / "ck")}}, run=False)
    cli.trainer.fit(cli.model, cli.datamodule)
    saved = torch.load(cli.config_init["checkpoint"].best_model_path, weights_only=False)
    key = next(k for k in saved["state_dict"] if k.endswith("weight"))
    assert not torch.equal(saved["state_dict"][key], saved["current_model_state"][key])  # averaged, not the last
    assert torch.equal(cli.model.state_dict()[key], saved["state_dict"][key])
    exported, _ = load_trained(cli.config_init["checkpoint"].best_model_path)
    assert torch.equal(exported.state_dict()[key.removeprefix("net.")], saved["state_dict"][key])
