"""The optimiser and learning-rate schedule of a training module: AdamW (fused) or SGD with Nesterov momentum, no
weight decay on biases and norm weights; a linear warm-up then cosine to zero, one-cycle, or none, stepped every
batch."""
from __future__ import annotations

from typing import Any, Literal

import torch

Optimizer = Literal["adamw", "sgd"]
Schedule = Literal["cosine", "onecycle", "none"]


def optimizer_and_schedule(params: list[torch.nn.Parameter], optimizer: str, lr: float, weight_decay: float,
                           schedule: str, warmup_epochs: int, total_steps: int,
                           max_epochs: int | None) -> Any:
    """What ``LightningModule.configure_optimizers`` returns for these settings (``total_steps``: the trainer's
    estimated stepping batches)."""
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    else:
        # fused: one kernel for every parameter's update (the step of a tiny student is mostly per-tensor overhead)
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for p in params)
        opt = torch.optim.AdamW(groups, lr=lr, fused=fused or None)
    if schedule == "none":
        return opt
    total = max(1, total_steps)
    if schedule == "onecycle":
        sched: Any = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total)
    else:  # linear warm-up (step s: (s + 1) / warm), then cosine to zero
        per_epoch = max(1, total // max(1, max_epochs or 1))
        warm = min(warmup_epochs * per_epoch, total // 2)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total - warm))
        sched = cosine if warm == 0 else torch.optim.lr_scheduler.SequentialLR(
            opt, [torch.optim.lr_scheduler.LinearLR(opt, 1 / warm, 1.0, max(1, warm - 1)), cosine], milestones=[warm])
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
