"""Trained-model files: atomic writes, and a plain ``.pt`` format loadable without Lightning.

A trained-model file holds ``{"model": <preset name | spec dict | teacher name>, "num_classes",
"class_names", "input_size", "state_dict", ...}``; everything is plain data, so it loads with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from models import build_model, build_student
from models.common import Preprocess


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``: a kill never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def save_trained(path: str | Path, model: nn.Module, model_def: str | dict, num_classes: int,
                 class_names: list[str] | None = None, **extra: Any) -> Path:
    """Write ``model`` with what is needed to rebuild it (``model_def``: preset/teacher name or spec dict)."""
    data = {"model": model_def, "num_classes": num_classes, "class_names": list(class_names or []),
            "input_size": model.preprocess.input_size, "mean": list(model.preprocess.mean),
            "std": list(model.preprocess.std), "state_dict": model.state_dict(), **extra}
    return atomic_write(path, lambda tmp: torch.save(data, tmp))


def build_from_def(model_def: str | dict, num_classes: int, input_size: int | None = None) -> nn.Module:
    """An untrained model from a spec dict (student) or a model name (teacher or preset)."""
    if isinstance(model_def, dict):
        return build_student(model_def, num_classes)
    if isinstance(model_def, str):
        return build_model(model_def, num_classes, weights=None, input_size=input_size)
    raise ValueError(f"cannot rebuild a model from {type(model_def).__name__}; a module passed as an object "
                     "must be rebuilt by the caller")


def load_trained(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by ``save_trained`` or trained by ``DistillModule`` (a Lightning ``.ckpt``).

    Returns ``(model in eval mode, metadata)``; needs neither Lightning nor the teacher."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in data and "hyper_parameters" in data:  # Lightning checkpoint of DistillModule
        hp = data["hyper_parameters"]
        if "model_def" not in data:
            raise ValueError(f"{path}: a Lightning checkpoint without 'model_def' (not written by DistillModule)")
        meta = {"model": data["model_def"], "num_classes": hp["num_classes"],
                "class_names": hp.get("class_names") or [], "input_size": data.get("input_size"),
                "val_f1": data.get("best_val_f1")}
        state = {k[len("student."):]: v for k, v in data["state_dict"].items() if k.startswith("student.")}
    else:
        meta = {k: v for k, v in data.items() if k != "state_dict"}
        state = data["state_dict"]
    model = build_from_def(meta["model"], meta["num_classes"], meta.get("input_size"))
    model.load_state_dict(state)
    if meta.get("mean") and meta.get("std") and meta.get("input_size"):
        model.preprocess = Preprocess(int(meta["input_size"]), tuple(meta["mean"]), tuple(meta["std"]))
    meta["input_size"] = model.preprocess.input_size
    return model.eval(), meta
