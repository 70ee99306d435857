"""Callbacks of every run: ``StudentComplexity`` (params, MACs of both counters, rules verdict and the
score estimate, printed when fitting starts and logged after every validation), ``TimeEstimate``
(a short measured probe at the start of training and the time the whole fit will take), ``StageClock`` (the fit's
wall time across interruptions) and ``StopOnSignal`` (the resume line after SIGTERM)."""
from __future__ import annotations

import sys
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from distill.competition import F1_BASE, MACS_BASE, competition_score, describe
from distill.console import duration, say


class StudentComplexity(Callback):
    """Args:
        f1_base, macs_base: the score's constants (defaults: the target data's).
    """

    def __init__(self, f1_base: float = F1_BASE, macs_base: float = MACS_BASE):
        if f1_base <= 0 or macs_base <= 0:
            raise ValueError(f"score constants must be > 0, got f1_base={f1_base}, macs_base={macs_base}")
        self.f1_base, self.macs_base = f1_base, macs_base
        self.info: dict[str, Any] = {}

    def measure(self, pl_module: L.LightningModule) -> dict[str, Any]:
        if not self.info:
            net = pl_module.net  # described as deployed (rep branches folded by describe)
            self.info = describe(net, net.preprocess.input_size)
        return self.info

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        c = self.measure(pl_module)
        verdict = "ok" if not c["rule_violations"] else "; ".join(c["rule_violations"])
        say(f"model: {c['input_size']}px, {c['params']:,} params, {c['macs_fvcore']:,} MACs (fvcore), "
                       f"{c['macs_competition']:,} MACs (competition counter), rules: {verdict}")
        if trainer.logger is not None:
            trainer.logger.log_metrics({"model/params": c["params"], "model/macs_fvcore": c["macs_fvcore"],
                                        "model/macs_competition": c["macs_competition"],
                                        "model/rules_ok": float(not c["rule_violations"])}, step=0)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        f1 = trainer.callback_metrics.get("val/f1")
        if f1 is None or trainer.sanity_checking:
            return
        score = competition_score(float(f1), self.measure(pl_module)["macs_fvcore"], self.f1_base, self.macs_base)
        trainer.callback_metrics["val/score"] = torch.tensor(score)
        if trainer.logger is not None:
            trainer.logger.log_metrics({"val/score": score}, step=trainer.global_step)


class TimeEstimate(Callback):
    """Time ``probe_batches`` training batches (after one warm-up batch) and print how long the fit will take.

    Args:
        probe_batches: batches timed at the start of the first epoch trained (0 = off).
    """

    def __init__(self, probe_batches: int = 10):
        if probe_batches < 0:
            raise ValueError(f"time_estimate.probe_batches must be >= 0, got {probe_batches}")
        self.probe_batches = probe_batches
        self.start: float | None = None
        self.estimate_seconds: float | None = None
        self.first_epoch: int | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.first_epoch is None:
            self.first_epoch = trainer.current_epoch

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.current_epoch == self.first_epoch and batch_idx == 1:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.start is None or self.estimate_seconds is not None or batch_idx != self.probe_batches:
            return
        per_batch = (time.perf_counter() - self.start) / self.probe_batches
        per_epoch = per_batch * trainer.num_training_batches
        epochs = (trainer.max_epochs or 1) - trainer.current_epoch
        self.estimate_seconds = per_epoch * epochs
        say(f"[estimate] {per_batch * 1000:.0f} ms per batch: {duration(per_epoch)} per epoch, about "
            f"{duration(self.estimate_seconds)} for the {epochs} epoch(s) left (validation not included)")


class StageClock(Callback):
    """A fit's wall time across interruptions: the seconds spent up to each saved checkpoint ride in it (this
    callback's state), so a fit resumed from ``last.ckpt`` counts on from them (the part of an epoch that was cut off
    and run again is counted once, as run again)."""

    def __init__(self):
        self.before = 0.0  # seconds of the fit's earlier runs, up to the checkpoint this one resumed from
        self.start = time.time()  # built with the run's CLI: its data set-up and any cache fill count too

    @property
    def seconds(self) -> float:
        return self.before + time.time() - self.start

    def state_dict(self) -> dict[str, float]:
        return {"seconds": self.seconds}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.before = float(state_dict.get("seconds", 0.0))


class StopOnSignal(Callback):
    """The resume line of a fit stopped by SIGTERM. Lightning itself ends the fit after the current batch (or
    validation batch) with its ``SIGTERMException``, a ``SystemExit`` of status 0 and no word; this says where to
    resume (``last.ckpt`` of the last finished epoch) on stderr, and ``distill`` exits 143."""

    @staticmethod
    def message(trainer: Any) -> str:
        paths = [p for c in trainer.checkpoint_callbacks
                 for p in (getattr(c, "last_model_path", ""), getattr(c, "best_model_path", "")) if p]
        last = next((p for p in paths if p.endswith("last.ckpt")), paths[0] if paths else "")
        where = (f"resume from {last} (the end of the last finished epoch): run the same pipeline command "
                 "again, or add --ckpt_path to the same distill fit command") if last else \
            "no epoch had finished, so nothing to resume: run the command again"
        return f"stopped by SIGTERM at epoch {trainer.current_epoch}, during validation or between batches; {where}"

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.is_global_zero:
            print(f"distill: {self.message(trainer)}", file=sys.stderr, flush=True)
