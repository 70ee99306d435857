"""LightningModules, mdistiller-style siblings over one small base:

- ``TrainingModule``: what every training shares (the network, label loss and mixup, metrics, optimiser and
  schedule, evaluation, prediction, checkpoint hooks); a subclass says how a step's logits become loss terms;
- ``Classifier``: one network on labels (a teacher fine-tune);
- ``DistillModule``: a student, a frozen teacher and a distillation loss (without a teacher: the no-teacher
  baseline on labels alone).

Batches are dicts (``distill.data``) of uint8 images at the run's base size; every network gets its
own view of the same (augmented) image through ``distill.preprocess.model_input``.
"""
from __future__ import annotations

import copy
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from jsonargparse import lazy_instance
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from torchmetrics.wrappers import ClasswiseWrapper

from distill.checkpoint import selected_val_f1
from distill.choices import check_choice
from distill.layout import check_class_names
from distill.losses import KD, DistillLoss, Focal, LabelLoss, Terms
from distill.models import create_model, model_definition
from distill.optim import Optimizer, Schedule, optimizer_and_schedule
from distill.preprocess import channels_last, model_input, unit_float
from distill.teacher import FrozenTeacher, TeacherSpec, frozen_teacher

# Defaults shown in the CLI's config; a module given one gets a fresh instance of its own (a default
# argument object is shared by every call, and losses hold state: class weights, DKD's epoch).
DEFAULT_LABEL_LOSS = lazy_instance(Focal)
DEFAULT_DISTILL_LOSS = lazy_instance(KD, temperature=4.0)


def own(loss: nn.Module, default: nn.Module) -> nn.Module:
    return copy.deepcopy(loss) if loss is default else loss


def weighted_sum(terms: Terms) -> torch.Tensor:
    return sum(terms.values())  # type: ignore[return-value]


MIXUP_WITH_CACHE = ("model.mixup mixes images the cached teacher never saw: record mixed views in the teacher cache "
                    "instead (teacher_cache.mix), or set model.mixup 0, or teacher_cache.enabled false")


def evaluation_metrics(class_names: list[str], prefix: str) -> MetricCollection:
    """``f1`` (macro), ``acc`` (micro) and ``f1_<class>`` for each class (torchmetrics' ``ClasswiseWrapper``)."""
    n = len(class_names)
    return MetricCollection({"f1": MulticlassF1Score(n, average="macro"), "acc": MulticlassAccuracy(n, average="micro"),
                             "per_class": ClasswiseWrapper(MulticlassF1Score(n, average=None), labels=list(class_names),
                                                           prefix="f1_")},
                             prefix=prefix, compute_groups=False)  # a shared group leaves the wrapped metric "not updated"


class TrainingModule(L.LightningModule):
    """The shared base: one network trained on ``losses(...)`` terms (a subclass defines them).

    Args:
        num_classes: number of classes (the CLI links it from the data module).
        net: student preset name, student spec dict, a named model (``efficientnet_lite0/1/2`` or a torchvision
            classifier), or an ``nn.Module`` with a ``.preprocess``.
        input_size, width: override the network's input size / a student's width multiplier.
        detail_size: a named model only: train and evaluate it on images shrunk to this size first, then resized
            to its input size (``distill.models.Preprocess``): a teacher that learns from what a student of that
            size sees. The distillation stage's ``teacher.detail_size`` must match.
        weights: initial weights: ``DEFAULT`` (ImageNet) for a named model, or a file.
        label_loss: the supervised loss (``Focal`` by default, ``CrossEntropy`` for a fine-tune).
        optimizer: ``adamw`` or ``sgd``; lr, weight_decay; schedule: ``cosine`` (with ``warmup_epochs``),
            ``onecycle`` or ``none``.
        mixup: mix each training batch with a shuffled copy of itself, weight ~ Beta(mixup, mixup); 0 = off.
        class_counts, class_names: training images per class (class weights of the label loss) and the class names
            (per-class metrics, checked against a checkpoint's); the CLI links them from the data module, and in plain
            use ``setup`` takes them from the trainer's data module when they are not given.
        base_size: the data's base image size (``data.image_size``), recorded in checkpoints so a model file can be
            evaluated on the images it was trained from; linked like the class names.
    """

    net_option = "net"  # the argument's name in error messages

    def __init__(self, num_classes: int, net: str | dict | nn.Module = "tiny", input_size: int | None = None,
                 width: float | None = None, weights: str | None = None, detail_size: int | None = None,
                 label_loss: LabelLoss = DEFAULT_LABEL_LOSS, optimizer: Optimizer = "adamw", lr: float = 3e-3,
                 weight_decay: float = 5e-4, schedule: Schedule = "cosine", warmup_epochs: int = 1,
                 mixup: float = 0.0, class_counts: list[int] | None = None, class_names: list[str] | None = None,
                 base_size: int | None = None):
        super().__init__()
        objects = ["net", "student"] if isinstance(net, nn.Module) else []
        self.save_hyperparameters(ignore=objects + ["label_loss", "distill_loss", "teacher"])
        self._check_options()
        if isinstance(net, nn.Module):
            if not hasattr(net, "preprocess"):
                raise ValueError("a network passed as a module needs a .preprocess (distill.models.Preprocess) attribute")
            self.net, self.model_def = net, None
        else:
            try:
                self.model_def = model_definition(net, input_size, width, detail_size)
            except ValueError as err:
                raise ValueError(f"{self.net_option}: {err}") from None
            self.net = create_model(self.model_def, num_classes, weights=weights)
        channels_last(self.net)
        self.label_loss = own(label_loss, DEFAULT_LABEL_LOSS)
        if class_counts is not None:
            self.label_loss.set_class_counts(class_counts)
        self.train_metrics = MulticlassF1Score(num_classes, average="macro")  # on the views it trains on
        self._make_evaluation_metrics()
        self.selected_val_f1: float | None = None  # of a loaded checkpoint (its ModelCheckpoint's best score)

    def _make_evaluation_metrics(self) -> None:
        """Macro F1, accuracy and per-class F1 (``val/f1_<class>``) of the validation and test splits."""
        names = self.hparams.class_names or [str(i) for i in range(self.hparams.num_classes)]
        self.val_metrics = evaluation_metrics(names, "val/")
        self.test_metrics = evaluation_metrics(names, "test/")

    def _check_options(self) -> None:
        hp = self.hparams
        if hp.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {hp.num_classes}")
        check_choice(hp.optimizer, Optimizer, "optimizer")
        check_choice(hp.schedule, Schedule, "schedule")
        if hp.mixup < 0:
            raise ValueError(f"mixup must be >= 0 (0 = off), got {hp.mixup}")
        if hp.lr <= 0:
            raise ValueError(f"lr must be > 0, got {hp.lr}")
        if hp.class_counts is not None and len(hp.class_counts) != hp.num_classes:
            raise ValueError(f"class_counts has {len(hp.class_counts)} entries for num_classes={hp.num_classes}")

    def attached_datamodule(self) -> Any:
        """The data module of the trainer this module is attached to, or None (a module built or loaded alone)."""
        try:
            return getattr(self.trainer, "datamodule", None)
        except RuntimeError:  # Lightning: not attached to a Trainer
            return None

    def setup(self, stage: str) -> None:
        """Class names, counts and base size from the trainer's data module where none were given (``num_classes``
        must match)."""
        datamodule = self.attached_datamodule()
        names = getattr(datamodule, "class_names", None)
        if names is None:
            return
        if len(names) != self.hparams.num_classes:
            raise ValueError(f"num_classes={self.hparams.num_classes}, but the data module has {len(names)} classes "
                             f"{list(names)}")
        if self.hparams.class_names is None:
            self.hparams.class_names = list(names)
            self._make_evaluation_metrics()  # per-class F1 named after the classes
        if self.hparams.class_counts is None and stage == "fit":
            self.hparams.class_counts = list(datamodule.class_counts)
            self.label_loss.set_class_counts(self.hparams.class_counts)
        if self.hparams.base_size is None:
            self.hparams.base_size = getattr(datamodule, "base_size", None)

    # ------------------------------------------------------------------ steps
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits for a uint8 (or 0..1 float) batch at any size."""
        return self.net(model_input(images, self.net.preprocess))

    def losses(self, logits: torch.Tensor, labels: torch.Tensor, images: torch.Tensor, batch: dict) -> Terms:
        """Named loss terms and their weighted total ``loss`` for ``logits`` of ``images`` (what the network saw;
        ``batch`` may carry ``partner_label`` / ``mix_weight`` of mixed images)."""
        raise NotImplementedError

    def mixed_losses(self, images: torch.Tensor, labels: torch.Tensor) -> Terms:
        """Mixup: the batch mixed with a shuffled copy, each loss term mixed with the same weight."""
        lam = float(torch.distributions.Beta(self.hparams.mixup, self.hparams.mixup).sample())
        perm = torch.randperm(len(labels), device=labels.device)
        x = unit_float(images)
        mixed = lam * x + (1 - lam) * x[perm]
        weights = torch.full((len(labels),), lam, device=labels.device)
        return self.losses(self(mixed), labels, mixed, {"partner_label": labels[perm], "mix_weight": weights})

    def label_terms(self, logits: torch.Tensor, labels: torch.Tensor, partner_labels: torch.Tensor | None = None,
                    weights: torch.Tensor | None = None) -> Terms:
        """The label loss; for mixed images each of the two labels counts with its image's share."""
        if partner_labels is None:
            return self.label_loss(logits, labels)
        own = self.label_loss(logits, labels, weights)
        other = self.label_loss(logits, partner_labels, 1 - weights)
        return {k: own[k] + other[k] for k in own}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        images, labels = batch["image"], batch["label"]
        if self.hparams.mixup > 0:
            if "teacher_logits" in batch:
                raise ValueError(MIXUP_WITH_CACHE)
            losses = self.mixed_losses(images, labels)
        else:
            logits = self(images)
            losses = self.losses(logits, labels, images, batch)
            # macro F1 on the views it trains on (own labels), beside val/f1: under- or over-fitting, read off
            self.train_metrics.update(logits.detach(), labels)
            self.log("train/f1", self.train_metrics, on_step=False, on_epoch=True)
        if not torch.isfinite(losses["loss"]):
            raise FloatingPointError(f"non-finite training loss ({losses['loss'].item()}) at epoch "
                                     f"{self.current_epoch}, step {self.global_step}; lower the learning rate")
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, on_step=False, on_epoch=True,
                      batch_size=len(labels), sync_dist=True)  # under DDP: the mean over every rank's batches
        return losses["loss"]

    def _evaluate(self, batch: dict, metrics: MetricCollection) -> None:
        logits, labels = self(batch["image"]), batch["label"]
        self.log(f"{metrics.prefix}loss", F.cross_entropy(logits, labels), batch_size=len(labels), sync_dist=True)
        metrics.update(logits, labels)

    def _log_evaluation(self, metrics: MetricCollection) -> None:
        values = metrics.compute()
        overall = [f"{metrics.prefix}{k}" for k in ("f1", "acc")]
        self.log_dict({k: values.pop(k) for k in overall}, prog_bar=True)
        self.log_dict(values)  # per class
        metrics.reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation(self.val_metrics)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        """``distill test``: the held-out split (``data.holdout_fraction``), else the validation split."""
        self._evaluate(batch, self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_evaluation(self.test_metrics)

    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        """One forward pass of the single network per image: no test-time augmentation."""
        logits = self(batch["image"])
        return {"index": batch["index"], "pred": logits.argmax(1), "prob": logits.softmax(1)}

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        hp = self.hparams
        return optimizer_and_schedule([p for p in self.net.parameters() if p.requires_grad], hp.optimizer, hp.lr,
                                      hp.weight_decay, hp.schedule, hp.warmup_epochs,
                                      int(self.trainer.estimated_stepping_batches), self.trainer.max_epochs)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["model_def"] = self.model_def
        checkpoint["input_size"] = self.net.preprocess.input_size
        checkpoint["base_size"] = self.hparams.base_size

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Called before the weights are loaded: a checkpoint of other classes (names or order) stops here,
        not in a size-mismatch traceback or, worse, in a submission shifted by one class."""
        datamodule = self.attached_datamodule()
        check_class_names((checkpoint.get("hyper_parameters") or {}).get("class_names"), self.hparams.class_names,
                          getattr(datamodule, "root", None))
        self.selected_val_f1 = selected_val_f1(checkpoint)


class Classifier(TrainingModule):
    """Supervised training of one network on its labels (the label loss; mixup if set). Args: as
    ``TrainingModule``."""

    def losses(self, logits: torch.Tensor, labels: torch.Tensor, images: torch.Tensor, batch: dict) -> Terms:
        terms = self.label_terms(logits, labels, batch.get("partner_label"), batch.get("mix_weight"))
        return {"loss": weighted_sum(terms), **terms}


class DistillModule(TrainingModule):
    """Student training with a frozen teacher: ``distill_weight * distill_loss + (1 - distill_weight) *
    label_loss``. Without a teacher it trains the student on labels alone (the no-teacher baseline).

    Args:
        student: the student (as ``net`` of ``Classifier``); input_size, width, weights: its overrides.
        teacher: a ``TeacherSpec`` (name, fine-tuned weights file, input size, precision), a teacher
            ``nn.Module`` with a ``.preprocess``, or None. Built when fitting starts; never checkpointed.
            Its logits come from the batch when the teacher-output cache replays them, else it runs online.
        distill_loss: a ``DistillLoss`` (``KD``, ``DKD``, ``DIST``, or any subclass by ``class_path``).
        distill_weight: weight of the distillation terms in [0, 1]; the label terms get the rest (0: labels alone,
            the teacher's logits are never read).
        The other arguments are ``TrainingModule``'s. With ``mixup`` the online teacher sees the mixed image.
    """

    net_option = "student"

    def __init__(self, num_classes: int, student: str | dict | nn.Module = "tiny",
                 teacher: TeacherSpec | nn.Module | None = None,
                 distill_loss: DistillLoss = DEFAULT_DISTILL_LOSS, distill_weight: float = 0.9,
                 input_size: int | None = None, width: float | None = None, weights: str | None = None,
                 detail_size: int | None = None, label_loss: LabelLoss = DEFAULT_LABEL_LOSS,
                 optimizer: Optimizer = "adamw", lr: float = 3e-3, weight_decay: float = 5e-4,
                 schedule: Schedule = "cosine", warmup_epochs: int = 1, mixup: float = 0.0,
                 class_counts: list[int] | None = None, class_names: list[str] | None = None,
                 base_size: int | None = None):
        super().__init__(num_classes, net=student, input_size=input_size, width=width, weights=weights,
                         detail_size=detail_size, label_loss=label_loss, optimizer=optimizer, lr=lr,
                         weight_decay=weight_decay, schedule=schedule, warmup_epochs=warmup_epochs, mixup=mixup,
                         class_counts=class_counts, class_names=class_names, base_size=base_size)
        if not 0 <= distill_weight <= 1:
            raise ValueError(f"distill_weight must be in [0, 1], got {distill_weight}")
        self.distill_loss, self.distill_weight = own(distill_loss, DEFAULT_DISTILL_LOSS), distill_weight
        # a teacher module is wrapped at once: a FrozenTeacher is no nn.Module, so it never joins the student's
        # parameters, device moves, DDP wrapper or checkpoints
        self.teacher_source = FrozenTeacher(teacher) if isinstance(teacher, nn.Module) else teacher
        self.teacher: FrozenTeacher | None = None  # built at the first batch that needs it (none read from a cache)

    @property
    def student(self) -> nn.Module:
        return self.net

    def build_teacher(self) -> FrozenTeacher | None:
        """The frozen teacher (built once, on the module's device); None without one."""
        if self.teacher is None and self.teacher_source is not None:
            self.teacher = frozen_teacher(self.teacher_source, self.hparams.num_classes)
        if self.teacher is not None:
            self.teacher.to(self.device)
        return self.teacher

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device)

    def on_train_epoch_start(self) -> None:
        self.distill_loss.on_epoch_start(self.current_epoch)

    def teacher_logits(self, images: torch.Tensor) -> torch.Tensor | None:
        """The teacher run online on ``images`` (built at the first call); None without a teacher."""
        teacher = self.teacher or self.build_teacher()
        if teacher is not None and teacher.cross_fit:
            raise ValueError("teacher.cross_fit: true is for the teacher-output cache (each image labelled by the member "
                             "that never trained on it); online, the members' mean would label images they trained "
                             "on: set teacher_cache.enabled: true, or list the teachers without cross_fit")
        return None if teacher is None else teacher(images)

    def losses(self, logits: torch.Tensor, labels: torch.Tensor, images: torch.Tensor, batch: dict) -> Terms:
        if self.distill_weight == 0:  # labels alone (a no-teacher arm that replays the cache's views)
            teacher = None
        else:
            teacher = batch["teacher_logits"] if "teacher_logits" in batch else self.teacher_logits(images)
        return self.combine(logits, labels, teacher, batch.get("partner_label"), batch.get("mix_weight"))

    def combine(self, logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None,
                partner_labels: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> Terms:
        """Named loss terms and their weighted total ``loss`` (``teacher_logits`` None: the label loss alone)."""
        label_terms = self.label_terms(logits, labels, partner_labels, weights)
        if teacher_logits is None:  # no teacher: plain training on labels
            return {"loss": weighted_sum(label_terms), **label_terms}
        distill_terms = self.distill_loss(logits, teacher_logits, labels)
        w = self.distill_weight
        loss = w * weighted_sum(distill_terms) + (1 - w) * weighted_sum(label_terms)
        return {"loss": loss, **label_terms, **distill_terms}
