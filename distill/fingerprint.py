"""What a stage computes from: its config files and overrides, composed and flattened to dotted keys, with every
input named by content instead of location. A finished stage is reused only for the same fingerprint.

The value of an input key (``*.weights``: the teacher's weights, a pruned model; ``data.root``) that names an existing
file stands for the file's sha256, one that names a folder for a digest of the files it learns from (relative path
and size under ``train/`` and ``val/``); keys that only say where outputs go or how progress is shown are left out. So a run folder or data set that moves keeps its fingerprints, and a changed setting,
teacher or data set changes them.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from distill.recipe import merge

# where a stage writes or finds its own outputs: not what it computes
LOCATION_KEYS = {"trainer.default_root_dir", "checkpoint.dirpath", "last_checkpoint.dirpath",
                 "teacher_cache.cache_dir", "submission.out_dir", "data.image_cache_dir"}
# how a stage shows its progress: not what it computes either
DISPLAY_KEYS = {"trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.log_every_n_steps",
                "time_estimate.probe_batches"}
INPUT_KEYS = (".weights", "data.root")  # keys (by ending) whose values name input files or folders
LABELLED = ("train", "val")  # the folders of a data root a stage learns from


def flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_digest(folder: Path) -> str:
    """Relative path and size of every file under ``folder``'s ``train/`` and ``val/`` (or under ``folder``, if it has
    neither), sorted: cheap, and blind to where the folder lies."""
    digest = hashlib.sha256()
    parts = [folder / name for name in LABELLED if (folder / name).is_dir()] or [folder]
    for path in sorted(p for part in parts for p in part.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}|{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def by_content(value: Any, base: Path) -> Any:
    """A path value (absolute, or relative to ``base``) as its content digest; other values (and lists) as they are."""
    if isinstance(value, list):
        return [by_content(v, base) for v in value]
    if not isinstance(value, str) or not value or "\n" in value or len(value) > 4096:
        return value
    path = Path(value) if Path(value).is_absolute() else base / value
    try:
        if path.is_file():
            return f"file sha256 {file_digest(path)}"
        if path.is_dir():
            return f"folder {folder_digest(path)}"
    except OSError:
        pass
    return value


def stage_settings(configs: list[Path], settings: dict[str, Any], seed: int) -> dict[str, Any]:
    """The stage's composed settings as flat dotted keys, inputs by content, output locations left out."""
    composed: dict[str, Any] = {}
    for config in configs:
        composed = merge(composed, yaml.safe_load(Path(config).read_text()) or {})
    composed = merge(merge(composed, settings), {"seed_everything": seed})
    return {key: by_content(value, Path.cwd()) if key.endswith(INPUT_KEYS) else value
            for key, value in sorted(flatten(composed).items()) if key not in LOCATION_KEYS | DISPLAY_KEYS}


def fingerprint(flat: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for each key whose value differs (or exists on one side only)."""
    missing = "(unset)"
    return [f"{key}: {old.get(key, missing)!r} -> {new.get(key, missing)!r}"
            for key in sorted(set(old) | set(new)) if old.get(key, missing) != new.get(key, missing)]
