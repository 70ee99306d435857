"""``DistillModule``: trains a student, with or without a frozen teacher, in one LightningModule.

Batches come from ``WasteDataModule`` as uint8 images at the run's base size. Each model gets its own
view of the same (augmented) image: resized to its input size and normalised with its own mean/std.
With no teacher the module trains a plain classifier; the same module fine-tunes the teacher itself
(``student="efficientnet_lite0", student_weights="DEFAULT"``).
"""
from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from distill.checkpoint import build_from_def
from distill.complexity import F1_BASE, MACS_BASE, competition_score, describe
from distill.losses import ALPHA_RULES, DistillationLoss, DKDLoss, FocalLoss, KDLoss, class_alpha
from models import PRESETS, TEACHER_NAMES, build_model, student_spec
from models.teachers import load_weights_file
from models.common import Preprocess


def channels_last(model: nn.Module) -> nn.Module:
    """Put a model's 4-D weights in channels-last layout (NHWC): about 2x faster convolutions on CPU for
    the EfficientNet teacher (fine-tune and cache fill); the same values, the same state dict keys."""
    return model.to(memory_format=torch.channels_last)


def unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float in 0..1; a float batch is taken to be in 0..1 already."""
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def model_view(images: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """uint8 (or 0..1 float) ``B x 3 x S x S`` -> float input for a model: resized to its size, normalised,
    in channels-last layout (see ``channels_last``)."""
    x = unit_float(images)
    if x.shape[-1] != preprocess.input_size or x.shape[-2] != preprocess.input_size:
        x = F.interpolate(x, size=(preprocess.input_size,) * 2, mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(preprocess.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


TEACHER_PRECISIONS = ("32", "bf16")


def check_teacher_precision(precision: str) -> None:
    if precision not in TEACHER_PRECISIONS:
        raise ValueError(f"teacher_precision={precision!r}: choose one of {TEACHER_PRECISIONS}")


@torch.no_grad()
def teacher_forward(teacher: nn.Module, images: torch.Tensor, precision: str = "32") -> torch.Tensor:
    """Float32 logits of the frozen teacher for a uint8 batch; ``precision="bf16"`` runs it under bfloat16
    autocast (about 3x faster on CPUs with AVX512-BF16/AMX, see ``benchmarks/teacher_layout.py``)."""
    check_teacher_precision(precision)
    x = model_view(images, teacher.preprocess)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        return teacher(x).float()


def resolve_model_def(student: str | dict, size: int | None, width: float | None) -> str | dict:
    """A student preset or spec becomes a full spec dict (so a checkpoint rebuilds it exactly);
    a teacher name stays a name."""
    if isinstance(student, dict) or student in PRESETS:
        return student_spec(student, size, width).to_dict()
    if student in TEACHER_NAMES:
        return student
    raise ValueError(f"student={student!r}: not a student preset ({sorted(PRESETS)}), a spec dict, "
                     "or a teacher model name")


class DistillModule(L.LightningModule):
    """Student training with KL distillation plus focal loss.

    Args:
        num_classes: number of classes (the CLI links it from the data module).
        student: student preset name, spec dict, or any model name (e.g. a teacher to fine-tune).
        student_size / student_width: override the student's input size / width multiplier.
        student_weights: initial weights for the student ("DEFAULT" = ImageNet for a teacher model, or a file).
        teacher: teacher model name (``efficientnet_lite0`` or a torchvision classifier); None = no distillation.
        teacher_weights: the fine-tuned teacher's weights file (``.pt`` export or Lightning ``.ckpt``).
        teacher_size: the teacher's input size (default: its own).
        distill: ``kd`` (Hinton) or ``dkd`` (decoupled KD).
        teacher_precision: ``32`` or ``bf16`` (bfloat16 autocast for the teacher's forward passes, online
            and when filling the teacher cache; the student always trains in the trainer's precision).
        temperature, alpha_kd: KD temperature T > 0 and the weight of the distillation term in [0, 1].
        dkd_alpha, dkd_beta, dkd_warmup: DKD weights and warm-up epochs.
        hard_loss: ``focal`` or ``ce`` for the label term; focal_gamma, focal_alpha (``none``, ``inverse``,
            ``effective``), label_smoothing.
        class_counts, class_names: from the data module (focal alpha weights, per-class metrics).
        optimizer: ``adamw`` or ``sgd``; lr, weight_decay; schedule: ``cosine``, ``onecycle`` or ``none``;
            warmup_epochs for cosine.
        mixup: mix each training batch with a shuffled copy of itself, weight ~ Beta(mixup, mixup); 0 = off.
            An online teacher sees the mixed image; cached teacher outputs are mixed as probabilities at
            temperature T (an approximation); the label loss is mixed with the same weight.
        f1_base, macs_base: score constants.
    """

    def __init__(self, num_classes: int, student: Any = "tiny", student_size: int | None = None,
                 student_width: float | None = None, student_weights: str | None = None,
                 teacher: Any = None, teacher_weights: str | None = None, teacher_size: int | None = None,
                 teacher_precision: str = "32", distill: str = "kd", temperature: float = 4.0, alpha_kd: float = 0.9,
                 dkd_alpha: float = 1.0, dkd_beta: float = 8.0, dkd_warmup: int = 5,
                 hard_loss: str = "focal", focal_gamma: float = 2.0, focal_alpha: str = "effective",
                 label_smoothing: float = 0.0, class_counts: list[int] | None = None,
                 class_names: list[str] | None = None, optimizer: str = "adamw", lr: float = 3e-3,
                 weight_decay: float = 5e-4, schedule: str = "cosine", warmup_epochs: int = 1,
                 mixup: float = 0.0, f1_base: float = F1_BASE, macs_base: float = MACS_BASE):
        super().__init__()
        modules = [name for name, value in (("student", student), ("teacher", teacher)) if isinstance(value, nn.Module)]
        self.save_hyperparameters(ignore=modules or None)
        # kept outside the module tree: it joins as ``self.teacher`` only for fit, never in checkpoints
        object.__setattr__(self, "_teacher_module", teacher if isinstance(teacher, nn.Module) else None)
        self._check_options()
        if isinstance(student, nn.Module):
            self.student, self.model_def = student, None
            if not hasattr(student, "preprocess"):
                raise ValueError("a student passed as a module needs a .preprocess (models.Preprocess) attribute")
        else:
            self.model_def = resolve_model_def(student, student_size, student_width)
            if student_weights is not None and isinstance(self.model_def, str):
                self.student = build_model(self.model_def, num_classes, weights=student_weights, input_size=student_size)
            else:
                self.student = build_from_def(self.model_def, num_classes, student_size)
                if student_weights is not None:
                    load_weights_file(self.student, student_weights, head="classifier.3")
        channels_last(self.student)
        self.teacher: nn.Module | None = None  # built in setup("fit"): predict and validate never need it
        self.teacher_released = False
        alpha = class_alpha(class_counts, focal_alpha) if class_counts else None
        gamma = focal_gamma if hard_loss == "focal" else 0.0
        hard = FocalLoss(gamma, alpha if hard_loss == "focal" else None, label_smoothing)
        soft = DKDLoss(dkd_alpha, dkd_beta, temperature, dkd_warmup) if distill == "dkd" else KDLoss(temperature)
        self.criterion = DistillationLoss(soft, hard, alpha_kd)
        metrics = MetricCollection({"f1": MulticlassF1Score(num_classes, average="macro"),
                                    "acc": MulticlassAccuracy(num_classes, average="micro")})
        self.val_metrics = metrics.clone(prefix="val/")
        self.val_per_class = MulticlassF1Score(num_classes, average=None)
        self.best_val_f1: float | None = None
        self.complexity: dict[str, Any] = {}
        self.strict_loading = False  # the teacher is not part of checkpoints

    def _check_options(self) -> None:
        hp = self.hparams
        if hp.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {hp.num_classes}")
        if hp.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {hp.temperature}")
        if not 0 <= hp.alpha_kd <= 1:
            raise ValueError(f"alpha_kd must be in [0, 1], got {hp.alpha_kd}")
        check_teacher_precision(hp.teacher_precision)
        if hp.distill not in ("kd", "dkd"):
            raise ValueError(f"distill={hp.distill!r}: choose 'kd' or 'dkd'")
        if hp.hard_loss not in ("focal", "ce"):
            raise ValueError(f"hard_loss={hp.hard_loss!r}: choose 'focal' or 'ce'")
        if hp.focal_alpha not in ALPHA_RULES:
            raise ValueError(f"focal_alpha={hp.focal_alpha!r}: choose one of {ALPHA_RULES}")
        if hp.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer={hp.optimizer!r}: choose 'adamw' or 'sgd'")
        if hp.schedule not in ("cosine", "onecycle", "none"):
            raise ValueError(f"schedule={hp.schedule!r}: choose 'cosine', 'onecycle' or 'none'")
        if hp.mixup < 0:
            raise ValueError(f"mixup must be >= 0 (0 = off), got {hp.mixup}")
        if hp.lr <= 0:
            raise ValueError(f"lr must be > 0, got {hp.lr}")
        teacher = hp.get("teacher")
        if teacher is not None and teacher not in TEACHER_NAMES:
            raise ValueError(f"teacher={teacher!r}: unknown; use 'efficientnet_lite0' or a torchvision classifier name")
        if hp.class_counts is not None and len(hp.class_counts) != hp.num_classes:
            raise ValueError(f"class_counts has {len(hp.class_counts)} entries for num_classes={hp.num_classes}")

    # ------------------------------------------------------------------ set-up
    def build_teacher(self) -> None:
        """Build (or take) the frozen teacher; called at the start of fit."""
        hp = self.hparams
        if self.teacher is not None or self.teacher_released:
            return
        if self._teacher_module is not None:
            teacher = self._teacher_module
            if not hasattr(teacher, "preprocess"):
                raise ValueError("a teacher passed as a module needs a .preprocess (models.Preprocess) attribute")
        elif hp.get("teacher") is not None:
            teacher = build_model(hp.teacher, hp.num_classes, weights=hp.teacher_weights, input_size=hp.teacher_size)
            if hp.teacher_weights is None:
                rank_zero_info("warning: the teacher has no weights (teacher_weights is None): distilling from noise")
        else:
            return
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.teacher = channels_last(teacher.eval().to(self.device))

    def release_teacher(self) -> None:
        """Drop the teacher once its outputs are cached: batches then carry the teacher logits."""
        self.teacher = None
        self.teacher_released = True

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.build_teacher()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # always: BN statistics and dropout of the teacher never change
        return self

    def student_complexity(self) -> dict[str, Any]:
        """Params, MACs (both counters) and rules verdict of the student (computed once)."""
        if not self.complexity:
            self.complexity = describe(self.student, self.student.preprocess.input_size)
        return self.complexity

    def on_fit_start(self) -> None:
        c = self.student_complexity()
        size = c["input_size"]
        verdict = "ok" if not c["rule_violations"] else "; ".join(c["rule_violations"])
        rank_zero_info(f"student: {size}px, {c['params']:,} params, {c['macs_fvcore']:,} MACs (fvcore), "
                       f"{c['macs_competition']:,} MACs (competition counter), rules: {verdict}")
        if self.logger is not None:
            self.logger.log_metrics({"student/params": c["params"], "student/macs_fvcore": c["macs_fvcore"],
                                     "student/macs_competition": c["macs_competition"],
                                     "student/rules_ok": float(not c["rule_violations"])}, step=0)

    # ------------------------------------------------------------------ steps
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Student logits for a uint8 (or 0..1 float) batch at any size."""
        return self.student(model_view(images, self.student.preprocess))

    def teacher_logits(self, images: torch.Tensor) -> torch.Tensor | None:
        if self.teacher is None:
            return None
        return teacher_forward(self.teacher, images, self.hparams.teacher_precision)

    def training_step(self, batch, batch_idx: int):
        images, labels = batch[0], batch[1]
        cached = batch[3] if len(batch) > 3 else None
        if self.hparams.mixup > 0:
            losses = self._mixup_losses(images, labels, cached)
        else:
            teacher = cached if cached is not None else self.teacher_logits(images)
            losses = self.criterion(self(images), labels, teacher)
        if not torch.isfinite(losses["loss"]):
            raise FloatingPointError(f"non-finite training loss ({losses['loss'].item()}) at epoch "
                                     f"{self.current_epoch}, step {self.global_step}; lower the learning rate")
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=False, on_step=False, on_epoch=True,
                      batch_size=len(labels))
        return losses["loss"]

    def _mixup_losses(self, images: torch.Tensor, labels: torch.Tensor,
                      cached: torch.Tensor | None) -> dict[str, torch.Tensor]:
        lam = float(torch.distributions.Beta(self.hparams.mixup, self.hparams.mixup).sample())
        perm = torch.randperm(len(labels), device=labels.device)
        x = unit_float(images)
        mixed = lam * x + (1 - lam) * x[perm]
        logits = self(mixed)
        if cached is not None:  # mix the teacher's probabilities at T; as logits, softmax(./T) gives them back
            t = self.hparams.temperature
            probs = lam * (cached / t).softmax(1) + (1 - lam) * (cached[perm] / t).softmax(1)
            teacher = t * probs.clamp_min(1e-12).log()
        else:
            teacher = self.teacher_logits(mixed)
        a = self.criterion(logits, labels, teacher)
        b = self.criterion(logits, labels[perm], teacher)
        return {k: lam * a[k] + (1 - lam) * b[k] for k in a}

    def on_train_epoch_start(self) -> None:
        if isinstance(self.criterion.distill, DKDLoss):
            self.criterion.distill.set_epoch(self.current_epoch)

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch[0], batch[1]
        logits = self(images)
        self.log("val/loss", F.cross_entropy(logits, labels), batch_size=len(labels))
        self.val_metrics.update(logits, labels)
        self.val_per_class.update(logits, labels)

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.log_dict(values, prog_bar=True)
        per_class = self.val_per_class.compute()
        names = self.hparams.class_names or [str(i) for i in range(self.hparams.num_classes)]
        self.log_dict({f"val_f1/{n}": v for n, v in zip(names, per_class)})
        self.val_metrics.reset()
        self.val_per_class.reset()
        f1 = float(values["val/f1"])
        macs = self.student_complexity()["macs_fvcore"]
        self.log("val/score", competition_score(f1, macs, self.hparams.f1_base, self.hparams.macs_base))
        if not self.trainer.sanity_checking:
            self.best_val_f1 = f1 if self.best_val_f1 is None else max(self.best_val_f1, f1)

    def test_step(self, batch, batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def on_test_epoch_end(self) -> None:
        self.on_validation_epoch_end()

    def predict_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        """One forward pass of the single student per image: no test-time augmentation."""
        logits = self(batch[0])
        return {"index": batch[2], "pred": logits.argmax(1), "prob": logits.softmax(1)}

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        hp = self.hparams
        decay = [p for p in self.student.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in self.student.parameters() if p.requires_grad and p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=0.9, nesterov=True)
        else:
            opt = torch.optim.AdamW(groups, lr=hp.lr)
        if hp.schedule == "none":
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if hp.schedule == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp.lr, total_steps=total)
        else:
            per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
            warm = min(hp.warmup_epochs * per_epoch, total // 2)

            def factor(step: int) -> float:
                if step < warm:
                    return (step + 1) / warm
                progress = (step - warm) / max(1, total - warm)
                return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("teacher.")}
        checkpoint["model_def"] = self.model_def
        checkpoint["input_size"] = self.student.preprocess.input_size
        checkpoint["best_val_f1"] = self.best_val_f1

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.best_val_f1 = checkpoint.get("best_val_f1")
