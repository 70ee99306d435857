import csv
import json

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distill.checkpoint import load_trained
from distill.cli import build_cli
from distill.data import WasteDataModule
from distill.module import DistillModule
from distill.submission import RuleViolationError, SubmissionWriter
from models import Preprocess, build_student

FAST = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.logger", "false"]


def tiny_teacher(num_classes: int) -> nn.Module:
    teacher = build_student("micro", num_classes, input_size=48)
    return teacher


def fit_module(root, tmp_path, seed=0, teacher=None, epochs=2, **model_kwargs):
    L.seed_everything(seed)
    dm = WasteDataModule(str(root), image_size=48, batch_size=16, augment="strong")
    module = DistillModule(dm.num_classes, student="nano", student_size=32, teacher=teacher,
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
    assert module.teacher is teacher and not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    optimised = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in teacher.parameters()}
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

    dm = WasteDataModule(str(demo_root), image_size=48, batch_size=4)
    module = DistillModule(9, student="nano", student_size=32, teacher=Probe())
    module.build_teacher()
    images = torch.randint(0, 255, (4, 3, 48, 48), dtype=torch.uint8)
    module.teacher_logits(images)
    assert seen["shape"] == (4, 3, 40, 40)
    assert dm.num_classes == 9


def test_same_seed_same_f1_and_weights(demo_root, tmp_path):
    a, _, _ = fit_module(demo_root, tmp_path / "a", seed=3)
    b, _, _ = fit_module(demo_root, tmp_path / "b", seed=3)
    assert a.best_val_f1 == b.best_val_f1
    for (k, va), vb in zip(a.student.state_dict().items(), b.student.state_dict().values()):
        assert torch.equal(va, vb), k


def test_bad_options_name_the_option():
    with pytest.raises(ValueError, match="temperature"):
        DistillModule(9, temperature=0)
    with pytest.raises(ValueError, match="alpha_kd"):
        DistillModule(9, alpha_kd=1.2)
    with pytest.raises(ValueError, match="teacher='resnet9000'"):
        DistillModule(9, teacher="resnet9000")
    with pytest.raises(ValueError, match="student='giant'"):
        DistillModule(9, student="giant")
    with pytest.raises(ValueError, match="input_size=8"):
        DistillModule(9, student="tiny", student_size=8)
    with pytest.raises(ValueError, match="teacher_precision='fp8'"):
        DistillModule(9, teacher_precision="fp8")


def test_cli_fit_then_predict_writes_complete_submission(demo_root, tmp_path):
    out = tmp_path / "run"
    cli = build_cli(["fit", "--data.root", str(demo_root), "--data.image_size", "48", "--data.batch_size", "16",
                     "--model.student", "nano", "--model.student_size", "32", "--model.teacher", "resnet18",
                     "--model.teacher_size", "32", "--trainer.max_epochs", "2", "--trainer.default_root_dir", str(out),
                     "--trainer.enable_progress_bar", "false"])
    best = cli.trainer.checkpoint_callback.best_model_path
    assert best.endswith("best.ckpt")
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    assert not any(k.startswith("teacher.") for k in ckpt["state_dict"])  # teacher not saved with the student
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
    assert report["macs_fvcore"] > 0 and report["macs_competition"] > 0 and report["input_size"] == 32
    assert report["val_macro_f1"] is not None and report["score"] is not None

    # a second predict does not overwrite the finished submission
    build_cli(["predict", "--config", str(config), "--ckpt_path", best, "--submission.out_dir", str(out),
               "--submission.layout", "competition", *FAST])
    competition = json.loads((out / "version_1" / "submission.csv").read_text())
    assert competition["macs"] == report["macs_fvcore"] and sorted(competition["submission"]) == images

    # the trained student loads as a plain nn.Module without Lightning
    student, meta = load_trained(best)
    assert isinstance(student, nn.Module) and meta["input_size"] == 32 and meta["class_names"] == classes


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


@pytest.mark.parametrize("online", [False, True])
def test_mixup_of_identical_samples_equals_plain_loss(online):
    """Mixing a batch of one repeated sample changes nothing: mixed teacher probabilities (cached) or the
    teacher on the mixed image (online) give the unmixed loss; a real batch gives a different one."""
    torch.manual_seed(0)
    teacher = tiny_teacher(9).eval()
    module = DistillModule(9, student="nano", student_size=32, teacher=teacher if online else None, mixup=0.4,
                           temperature=3.0, alpha_kd=0.7)
    module.build_teacher()
    with torch.no_grad():  # random weights so that the outputs depend on the input
        for p in list(module.student.parameters()) + list(teacher.parameters()):
            p.normal_(0, 0.5)
    module.eval()  # BN in eval: the student's output per sample does not depend on the batch
    same = torch.randint(0, 255, (1, 3, 48, 48), dtype=torch.uint8).repeat(6, 1, 1, 1)
    labels = torch.full((6,), 4)
    cached = None if online else torch.randn(1, 9).repeat(6, 1)
    teacher_logits = module.teacher_logits(same) if online else cached
    plain = module.criterion(module(same), labels, teacher_logits)
    mixed = module._mixup_losses(same, labels, cached)
    for key in plain:
        assert torch.allclose(plain[key], mixed[key], atol=1e-5), key
    varied = torch.randint(0, 255, (6, 3, 48, 48), dtype=torch.uint8)
    other = module._mixup_losses(varied, torch.arange(6), None if online else torch.randn(6, 9))
    assert not torch.allclose(other["loss"], plain["loss"])


def test_mixup_trains_and_rejects_negative(demo_root, tmp_path):
    with pytest.raises(ValueError, match="mixup"):
        DistillModule(9, mixup=-1)
    module, _, _ = fit_module(demo_root, tmp_path, teacher=tiny_teacher(9), epochs=1, mixup=0.4)
    assert module.best_val_f1 is not None
