"""``StudentComplexity``: the trained network's params, MACs (both counters), rules verdict and the
competition score estimate, printed when fitting starts and logged after every validation."""
from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from distill.console import say

from distill.competition import F1_BASE, MACS_BASE, competition_score, describe


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
            net = pl_module.net
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
