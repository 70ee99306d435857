"""Trained-model files: atomic writes, and a plain ``.pt`` format loadable without Lightning.

A trained-model file holds ``{"model": <distill.models.model_definition>, "num_classes", "class_names",
"input_size", "base_size", "mean", "std", "state_dict", ...}``; everything is plain data, so it loads with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from distill.models import DamagedFileError, Preprocess, create_model, load_file, reparameterize, state_dict_of


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``: a kill never leaves a half-written file. The file
    gets the mode a plain ``open()`` would give it (0666 less the umask), not the temporary file's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def save_trained(path: str | Path, model: nn.Module, model_def: str | dict, num_classes: int,
                 class_names: list[str] | None = None, base_size: int | None = None, **extra: Any) -> Path:
    """Write ``model`` with what is needed to rebuild it (``model_def`` from ``distill.models.model_definition``) and
    the base size its inputs were made at (``distill.preprocess``). A student trained with ``rep`` branches is
    written in its folded, deployable form (``distill.models.reparameterize``)."""
    deployable = reparameterize(model)
    if deployable is not model:
        model, model_def = deployable, deployable.spec.to_dict()
    data = {"model": model_def, "num_classes": num_classes, "class_names": list(class_names or []),
            "input_size": model.preprocess.input_size, "base_size": base_size, "mean": list(model.preprocess.mean),
            "std": list(model.preprocess.std), "state_dict": model.state_dict(), **extra}
    return atomic_write(path, lambda tmp: torch.save(data, tmp))


def read_model_file(path: str | Path) -> dict[str, Any]:
    """A model file or checkpoint's contents (``distill.models.load_file``: an error names a damaged file)."""
    data = load_file(path, "model file")
    if not isinstance(data, dict) or "state_dict" not in data:
        raise DamagedFileError(f"{path} is not a model file of this library (no state_dict): delete it or point "
                               "to the model.pt / .ckpt a stage wrote")
    return data


def selected_val_f1(checkpoint: dict[str, Any], monitor: str = "val/f1") -> float | None:
    """The best ``monitor`` score of the checkpoint's ``ModelCheckpoint`` (Lightning keeps it in the callback's
    state, written before the checkpoint it selects): the val F1 that chose this checkpoint, or None."""
    for state in (checkpoint.get("callbacks") or {}).values():
        if isinstance(state, dict) and state.get("monitor") == monitor and state.get("best_model_score") is not None:
            return float(state["best_model_score"])
    return None


def load_trained(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by ``save_trained`` or trained by a ``distill.module`` module (a Lightning ``.ckpt``).

    Returns ``(model in eval mode, metadata)``; the metadata always has ``input_size`` and ``base_size``
    (the input size when the file does not record one). Needs neither Lightning nor the teacher."""
    path = Path(path)
    data = read_model_file(path)  # read once: the checkpoint's state dict below comes from the same contents
    if "state_dict" in data and "hyper_parameters" in data:  # Lightning checkpoint of a distill.module module
        hp = data["hyper_parameters"]
        if data.get("model_def") is None:
            raise ValueError(f"{path}: a Lightning checkpoint without 'model_def' (not written by distill.module, "
                             "or its network was passed as a module object)")
        meta = {"model": data["model_def"], "num_classes": hp["num_classes"],
                "class_names": hp.get("class_names") or [], "input_size": data.get("input_size"),
                "base_size": data.get("base_size"), "val_f1": selected_val_f1(data)}
        state = state_dict_of(data, path)
    else:
        meta = {k: v for k, v in data.items() if k != "state_dict"}
        state = data["state_dict"]
    model = create_model(meta["model"], meta["num_classes"], input_size=meta.get("input_size"))
    model.load_state_dict(state)
    if meta.get("mean") and meta.get("std") and meta.get("input_size"):
        model.preprocess = Preprocess(int(meta["input_size"]), tuple(meta["mean"]), tuple(meta["std"]),
                                      model.preprocess.detail_size)
    meta["input_size"] = model.preprocess.input_size
    meta["base_size"] = meta.get("base_size") or meta["input_size"]
    return model.eval(), meta
