"""Scoring trained models on a labelled split, and comparing two training recipes honestly.

A verdict such as "the teacher lifts the student" is made on images no run used to pick a checkpoint (the
held-out split, ``data.holdout_fraction``), as the mean over seeds, with a hierarchical bootstrap for its confidence
interval: every resample draws each recipe's seeds anew, then images, the same images for both recipes and every
seed, so the interval holds how much the difference depends on the seeds run and on the images held out.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics.functional.classification import multiclass_f1_score

from distill.checkpoint import atomic_write_text
from distill.preprocess import model_input


@torch.no_grad()
def predict_labels(model: nn.Module, dataset: Dataset, batch_size: int = 128) -> np.ndarray:
    """Predicted class of every item of ``dataset`` (``{"image": uint8 3xSxS, ...}`` items), in order:
    one forward pass of ``model`` (with its ``.preprocess``) per image."""
    model.eval()
    preds = [model(model_input(batch["image"], model.preprocess)).argmax(1)
             for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False)]
    return torch.cat(preds).numpy() if preds else np.zeros(0, np.int64)


@dataclass(frozen=True)
class FilePrediction:
    path: str
    label: str  # the predicted class name
    probability: float  # the softmax probability of that class


@torch.no_grad()
def predict_files(model_file: str | Path, paths: list[str | Path], batch_size: int = 64) -> list[FilePrediction]:
    """The class of each image file by a trained model file (``model.pt`` or a ``.ckpt``): the training path from
    file to input at the base size the file records (``distill.preprocess``), one forward pass per image."""
    from distill.checkpoint import load_trained
    from distill.preprocess import preprocess_files

    model, meta = load_trained(model_file)
    names = meta.get("class_names") or [str(i) for i in range(meta["num_classes"])]
    base_size = meta.get("base_size") or model.preprocess.input_size
    model.eval()
    out: list[FilePrediction] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        probs = model(preprocess_files(chunk, base_size, model.preprocess)).softmax(1)
        best, index = probs.max(1)
        out += [FilePrediction(str(p), names[int(i)], float(b)) for p, i, b in zip(chunk, index, best)]
    return out


def macro_f1(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> float:
    """Macro F1 as the training metrics compute it (torchmetrics)."""
    return float(multiclass_f1_score(torch.as_tensor(preds), torch.as_tensor(labels), num_classes, average="macro"))


def offclass_entropy(logits: np.ndarray) -> float:
    """How much a teacher says about the classes it did not pick: the entropy of its softmax over the other
    classes (renormalised), divided by its maximum ``log(C - 1)``, averaged over ``logits`` (``... x C``). 1.0: those
    classes are equally likely to it, it passes on no similarity between classes (what label smoothing does to
    a teacher); lower: it says which wrong classes an image resembles."""
    classes = logits.shape[-1]
    if classes < 3:
        raise ValueError(f"offclass_entropy needs at least 3 classes (two others to compare), got {classes}")
    values = logits.reshape(-1, classes)  # a cache's memory map stays one: read in pieces of a few MiB
    entropies = []
    for start in range(0, len(values), 65536):
        probs = torch.from_numpy(np.array(values[start:start + 65536], dtype=np.float32)).softmax(-1)
        others = probs.scatter(-1, probs.argmax(-1, keepdim=True), 0.0)
        others = others / others.sum(-1, keepdim=True)
        entropies.append(-torch.special.xlogy(others, others).sum(-1))
    return float(torch.cat(entropies).mean() / np.log(classes - 1))


@dataclass(frozen=True)
class PairedComparison:
    """Recipe A minus recipe B on the same images: mean over seeds, and a bootstrap interval over seeds and images."""

    difference: float  # mean F1 of A over seeds minus that of B
    low: float  # lower end of the interval (``level``)
    high: float
    per_seed: list[float]  # A - B for seed pairs (A's i-th seed against B's i-th seed)
    level: float
    resamples: int
    resampled: str = "seeds and images"  # what each bootstrap resample draws anew ("images": the seeds held fixed)


def run_f1(labels: np.ndarray, preds: np.ndarray, idx: np.ndarray, num_classes: int) -> np.ndarray:
    """Macro F1 of one run's ``preds`` on each row of image indices ``idx`` (resamples x images), in chunks of a few
    million images."""
    chunks = np.array_split(np.arange(len(idx)), max(1, idx.size // 2_000_000))
    return np.concatenate([multiclass_f1_score(torch.as_tensor(preds[idx[c]]), torch.as_tensor(labels[idx[c]]),
                                               num_classes, average="macro", multidim_average="samplewise").numpy()
                           for c in chunks])


def paired_bootstrap(labels: np.ndarray, preds_a: list[np.ndarray], preds_b: list[np.ndarray], num_classes: int,
                     resamples: int = 2000, level: float = 0.95, seed: int = 0,
                     resample_seeds: bool = True) -> PairedComparison:
    """Hierarchical bootstrap of ``mean_seeds F1(A) - mean_seeds F1(B)``: each resample draws each arm's seeds with
    replacement (A's and B's independently: a seed of one arm is no twin of the other's) and then the images with
    replacement, the same images for both arms and every seed (the pairing). The interval so holds both how much
    the difference depends on which images were held out and how much on which seeds were run; with one seed an
    arm it is the paired bootstrap over images. ``resample_seeds=False`` holds the seeds fixed (images only).

    ``preds_a`` / ``preds_b``: each seed's predictions for the same ``labels`` (any number of seeds each). Draws, in
    order from ``np.random.default_rng(seed)``: the image indices of every resample, then A's seed picks, then B's."""
    labels = np.asarray(labels)
    if not preds_a or not preds_b:
        raise ValueError("paired_bootstrap needs at least one run of each recipe")
    for preds in (*preds_a, *preds_b):
        if len(preds) != len(labels):
            raise ValueError(f"predictions for {len(preds)} images, labels for {len(labels)}: not the same images")
    everything = np.arange(len(labels))[None]
    difference = float(np.mean([run_f1(labels, p, everything, num_classes) for p in preds_a])
                       - np.mean([run_f1(labels, p, everything, num_classes) for p in preds_b]))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(labels), size=(resamples, len(labels)))

    def arm_means(runs: list[np.ndarray]) -> np.ndarray:
        """Per resample, the mean F1 over the arm's seeds as drawn (all of them once, without ``resample_seeds``)."""
        f1 = np.stack([run_f1(labels, p, idx, num_classes) for p in runs], axis=1)  # resamples x seeds
        if not resample_seeds:
            return f1.mean(1)
        picks = rng.integers(0, len(runs), size=(resamples, len(runs)))
        return np.take_along_axis(f1, picks, axis=1).mean(1)

    draws = arm_means(preds_a) - arm_means(preds_b)
    tail = (1 - level) / 2
    per_seed = [macro_f1(labels, a, num_classes) - macro_f1(labels, b, num_classes) for a, b in zip(preds_a, preds_b)]
    return PairedComparison(difference, float(np.quantile(draws, tail)), float(np.quantile(draws, 1 - tail)),
                            per_seed, level, resamples, "seeds and images" if resample_seeds else "images")


@dataclass(frozen=True)
class ScoredImages:
    """One run's per-image predictions on one or more splits (the JSON files ``distill.evaluation.score_split``
    writes), joined in the order given."""

    paths: list[str]
    labels: np.ndarray
    preds: np.ndarray
    num_classes: int

    @classmethod
    def read(cls, *files: str | Path) -> "ScoredImages":
        if not files:
            raise ValueError("ScoredImages.read needs at least one predictions file")
        parts = []
        for f in files:
            try:
                part = json.loads(Path(f).read_text())
                part = {key: part[key] for key in ("paths", "labels", "preds", "class_names")}
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{f} is not a predictions file of distill.evaluation.score_split "
                                 f"({type(err).__name__}: {err}); delete it and rerun the stage or benchmark") from err
            parts.append(part)
        return cls([p for part in parts for p in part["paths"]],
                   np.array([y for part in parts for y in part["labels"]], dtype=np.int64),
                   np.array([y for part in parts for y in part["preds"]], dtype=np.int64),
                   len(parts[0]["class_names"]))

    @property
    def f1(self) -> float:
        return macro_f1(self.labels, self.preds, self.num_classes)


def compare_scored(runs_a: list[ScoredImages], runs_b: list[ScoredImages], what: str = "images",
                   name_a: str = "a", name_b: str = "b") -> dict[str, Any]:
    """Recipe A minus recipe B over runs scored on the same images: ``paired_bootstrap``'s fields, the number of
    images and each run's macro F1 (``{name_a}_f1_per_seed``, ``{name_b}_f1_per_seed``). ``what`` names the
    images in the error raised when the runs were scored on different ones."""
    if not runs_a or not runs_b:
        raise ValueError("compare_scored needs at least one run of each recipe")
    if any(r.paths != runs_a[0].paths for r in runs_a + runs_b):
        raise ValueError(f"the runs were scored on different {what}: compare only runs of one recipe and data split")
    first = runs_a[0]
    comparison = paired_bootstrap(first.labels, [r.preds for r in runs_a], [r.preds for r in runs_b],
                                  first.num_classes)
    return {**asdict(comparison), "images": len(first.labels),
            f"{name_a}_f1_per_seed": [r.f1 for r in runs_a], f"{name_b}_f1_per_seed": [r.f1 for r in runs_b]}


def compare_files(kd: list[tuple[str | Path | None, ...]], ce: list[tuple[str | Path | None, ...]],
                  what: str) -> dict[str, Any] | None:
    """KD minus no teacher over the per-image prediction files of each seed's run (a tuple of files per run, read as
    one set of images: e.g. its val and held-out files), seeds paired; None without both arms or with a file
    missing (a run that did not score that split)."""
    if not kd or not ce or any(f is None for run in kd + ce for f in run):
        return None
    runs = [ScoredImages.read(*run) for run in kd + ce]  # type: ignore[arg-type]
    return compare_scored(runs[: len(kd)], runs[len(kd):], what, "kd", "ce")


def score_split(model: nn.Module, datamodule: Any, split: str, path: Path) -> tuple[float | None, str | None]:
    """Macro F1 of ``model`` on the data module's ``holdout`` or ``val`` split, with its per-image predictions
    written to ``path``; ``(None, None)`` when the recipe holds out nothing (or has no val split)."""
    dataset = datamodule.labelled_split(split)
    if dataset is None:
        return None, None
    labels = [s.label for s in dataset.samples]
    preds = predict_labels(model, dataset)
    f1 = macro_f1(np.array(labels), preds, datamodule.num_classes)
    root = datamodule.root
    atomic_write_text(path, json.dumps({"f1": f1, "class_names": datamodule.class_names,
                                        "paths": [s.path.relative_to(root).as_posix() for s in dataset.samples],
                                        "labels": labels, "preds": preds.tolist()}))
    return f1, str(path)
