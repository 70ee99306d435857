"""Report card of a trained student on the validation split: confusion matrix, per-class table,
params, MACs (both counters), latency and score, as ``report_card.json`` + ``report_card.md``.

    distill report runs/trashnet/student_kd/seed_0/model.pt --data ../shared/data/trashnet --out runs/card

The validation images go through the same path as in training (``distill.preprocess``, at the base size
recorded in the model file), so the card's macro F1 is the one training reported.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.benchmark import Timer
from torchmetrics.classification import (
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from distill.checkpoint import atomic_write_text, load_trained
from distill.competition import F1_BASE, MACS_BASE, competition_score, describe
from distill.console import say
from distill.data import WasteDataModule
from distill.evaluation import predict_labels
from distill.layout import check_class_names


def evaluate(model: nn.Module, dataset: Any, num_classes: int, batch_size: int = 128) -> dict[str, torch.Tensor]:
    """Per-class precision, recall and F1, macro F1 and the confusion matrix of ``model`` on a labelled split, its
    predictions made by the library's one offline evaluation pass (``distill.evaluation.predict_labels``)."""
    preds = torch.as_tensor(predict_labels(model, dataset, batch_size))
    labels = torch.tensor([s.label for s in dataset.samples])
    metrics = {"precision": MulticlassPrecision(num_classes, average=None),
               "recall": MulticlassRecall(num_classes, average=None),
               "f1": MulticlassF1Score(num_classes, average=None),
               "macro_f1": MulticlassF1Score(num_classes, average="macro"),
               "confusion": MulticlassConfusionMatrix(num_classes)}
    return {name: metric(preds, labels) for name, metric in metrics.items()}


def latency_ms(model: nn.Module, size: int, seconds: float = 0.5, threads: int = 1) -> float:
    """Median batch-1 CPU latency with ``threads`` torch threads (``torch.utils.benchmark.Timer``: the median of
    timed blocks over about ``seconds``, after a warm-up block)."""
    x = torch.randn(1, 3, size, size)

    @torch.inference_mode()
    def forward() -> None:
        model(x)

    return 1000 * Timer("forward()", globals={"forward": forward}, num_threads=threads).blocked_autorange(
        min_run_time=seconds).median


def plot_confusion(confusion: torch.Tensor, class_names: list[str], path: Path) -> None:
    """The confusion matrix as a figure (torchmetrics' ``MulticlassConfusionMatrix.plot``: true classes as rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = MulticlassConfusionMatrix(len(class_names)).plot(val=confusion, labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.set_size_inches(1.0 + 0.7 * len(class_names), 0.8 + 0.7 * len(class_names))
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def report_card(model: nn.Module, dm: WasteDataModule, out_dir: str | Path, f1_base: float = F1_BASE,
                macs_base: float = MACS_BASE) -> dict[str, Any]:
    """Evaluate ``model`` on ``dm``'s held-out split (``holdout_fraction`` > 0: the images no stage trained on or
    chose with), else on its validation split, and write the report card into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    held_out = dm.labelled_split("holdout")
    split, dataset = ("held-out", held_out) if held_out is not None else ("val", dm.labelled_split("val"))
    names = dm.class_names
    results = evaluate(model, dataset, len(names), dm.hparams.batch_size)
    size = model.preprocess.input_size
    info = describe(model, size)
    macro = float(results["macro_f1"])
    card = {
        "split": split, "images": len(dataset), "input_size": size, "params": info["params"],
        "macs_fvcore": info["macs_fvcore"], "macs_competition": info["macs_competition"],
        "rule_violations": info["rule_violations"], "macro_f1": macro,
        "score": competition_score(macro, info["macs_fvcore"], f1_base, macs_base),
        "latency_ms_batch1_1thread": latency_ms(model, size),
        "per_class": {n: {"precision": float(results["precision"][i]), "recall": float(results["recall"][i]),
                          "f1": float(results["f1"][i]), "support": int(results["confusion"][i].sum())}
                      for i, n in enumerate(names)},
        "confusion_matrix": results["confusion"].tolist(), "class_names": names,
    }
    plot_confusion(results["confusion"], names, out / "confusion_matrix.png")
    atomic_write_text(out / "report_card.json", json.dumps(card, indent=2))
    lines = ["# Student report card", "",
             f"- input: {size} px, params: {card['params']:,}",
             f"- MACs: {card['macs_fvcore']:,} (fvcore), {card['macs_competition']:,} (competition counter)",
             f"- rules: {'ok' if not card['rule_violations'] else '; '.join(card['rule_violations'])}",
             f"- {split} macro F1: {macro:.4f} on {card['images']} images; score {card['score']:.4f} (lower is better)",
             f"- latency (batch 1, 1 CPU thread, median): {card['latency_ms_batch1_1thread']:.3f} ms", "",
             "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
              for n, v in card["per_class"].items()]
    lines += ["", "![confusion matrix](confusion_matrix.png)", ""]
    atomic_write_text(out / "report_card.md", "\n".join(lines))
    return card


def run(args: argparse.Namespace) -> None:
    """``distill report`` (arguments: ``distill.command_args.report_parser``)."""
    model, meta = load_trained(args.model)
    holdout = meta.get("holdout") or {"fraction": 0.0, "seed": 0}
    if not holdout["fraction"]:
        say(f"{args.model} records no held-out split (a model of a run without data.holdout_fraction, or older): "
            "scoring the whole val/ split, which its training may have used to choose a checkpoint")
    dm = WasteDataModule(args.data, image_size=meta["base_size"], augment="none", keep_aspect=args.keep_aspect,
                         holdout_fraction=holdout["fraction"], holdout_seed=holdout["seed"])
    check_class_names(meta.get("class_names"), dm.class_names, args.data)
    card = report_card(model, dm, args.out)
    print(f"{card['split']} macro F1 {card['macro_f1']:.4f} on {card['images']} images, score {card['score']:.4f}; "
          f"wrote {Path(args.out) / 'report_card.md'}")

