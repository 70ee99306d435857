"""Writing the submission and its report from one prediction pass of the single student."""
from __future__ import annotations

import csv
import io
import json
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from distill.checkpoint import atomic_write_text
from distill.choices import check_choice
from distill.competition import F1_BASE, MACS_BASE, competition_score, describe
from distill.console import say
from distill.models import reparameterize

Layout = Literal["csv", "competition"]


class RuleViolationError(RuntimeError):
    """The student breaks the competition's rules and the user did not override the check."""


def free_output_dir(out_dir: Path, overwrite: bool, filename: str = "submission.csv") -> Path:
    """``out_dir``, or a fresh ``out_dir/version_N`` when a finished submission is already there."""
    if overwrite or not (out_dir / filename).exists():
        return out_dir
    n = 1
    while (out_dir / f"version_{n}" / filename).exists():
        n += 1
    return out_dir / f"version_{n}"


OUTPUTS = ("submission.csv", "report.json")


def set_aside(out_dir: Path) -> None:
    """Rename an existing submission and report in ``out_dir`` to ``*.previous``: a predict that then fails
    leaves no ``submission.csv`` that could pass for its own."""
    for name in OUTPUTS:
        if (out_dir / name).exists():
            (out_dir / name).replace(out_dir / f"{name}.previous")


def submission_rows(names: list[str], preds: list[int], class_names: list[str]) -> list[tuple[str, str]]:
    """(file name, class name) rows sorted by file name."""
    return sorted((n, class_names[p]) for n, p in zip(names, preds))


def render_csv(rows: list[tuple[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "label"])
    writer.writerows(rows)
    return buffer.getvalue()


def render_competition(rows: list[tuple[str, str]], macs: int) -> str:
    """The competition's own layout: ``{"macs": N, "submission": {"<file name>": "<Class>", ...}}``."""
    return json.dumps({"macs": int(macs), "submission": dict(rows)}, ensure_ascii=False, indent=1)


class SubmissionWriter(BasePredictionWriter):
    """After ``predict``: ``submission.csv`` (``image,label``, one row per image, sorted by name) and
    ``report.json`` beside it.

    Args:
        out_dir: where to write (default: the trainer's ``default_root_dir``). A finished submission there
            is never overwritten silently: a new ``version_N`` folder is used unless ``overwrite``.
        layout: ``csv``, or ``competition`` for the JSON ``{"macs": N, "submission": {...}}`` saved under the
            same name.
        allow_rule_violations: write a submission even if the student fails the rules check.
        overwrite: replace an existing submission in ``out_dir``.
        f1_base, macs_base: the score's constants for the report (the CLI links them from ``complexity``).
    """

    def __init__(self, out_dir: str | None = None, layout: Layout = "csv", allow_rule_violations: bool = False,
                 overwrite: bool = False, f1_base: float = F1_BASE, macs_base: float = MACS_BASE):
        super().__init__(write_interval="epoch")
        self.f1_base, self.macs_base = f1_base, macs_base
        self.complexity: dict[str, Any] = {}
        check_choice(layout, Layout, "submission.layout")
        self.out_dir, self.layout = out_dir, layout
        self.allow_rule_violations, self.overwrite = allow_rule_violations, overwrite
        self.written: Path | None = None
        self.message: str | None = None  # what predict wrote, said in teardown
        self.run_id = ""
        self.target: Path | None = None  # the folder this run writes into

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.run_id, self.written, self.message = uuid.uuid4().hex[:12], None, None
        self.target = free_output_dir(Path(self.out_dir or trainer.default_root_dir), self.overwrite)
        set_aside(self.target)  # an older submission there is never mistaken for this run's
        if trainer.world_size > 1:
            raise RuntimeError("predict writes one submission: run it on a single device (--trainer.devices 1)")
        pl_module.net = net = reparameterize(pl_module.net)  # predict with (and count) the deployed form
        self.complexity = describe(net, net.preprocess.input_size)
        violations = self.complexity["rule_violations"]
        if violations and not self.allow_rule_violations:
            raise RuleViolationError("the student breaks the competition rules, refusing to write a submission "
                                     "(set --submission.allow_rule_violations true to override):\n  "
                                     + "\n  ".join(violations))

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Any,
                           batch_indices: Any) -> None:
        files = trainer.datamodule.predict_files()
        index = torch.cat([p["index"] for p in predictions]).tolist()
        preds = torch.cat([p["pred"] for p in predictions]).tolist()
        if sorted(index) != list(range(len(files.names))):
            raise RuntimeError(f"prediction covered {len(set(index))} of {len(files.names)} images; refusing to write "
                               "an incomplete submission")
        names = [files.names[i] for i in index]
        class_names = trainer.datamodule.class_names
        fallback, unreadable = files.fallback, files.unreadable
        if fallback in class_names:
            preds = [class_names.index(fallback) if n in unreadable else p for n, p in zip(names, preds)]
        rows = submission_rows(names, preds, class_names)
        complexity = self.complexity
        out = self.target or free_output_dir(Path(self.out_dir or trainer.default_root_dir), self.overwrite)
        # the competition layout carries the figure of the competition's own counter (fvcore's stays in report.json)
        text = render_csv(rows) if self.layout == "csv" else render_competition(rows, complexity["macs_competition"])
        self.written = atomic_write_text(out / "submission.csv", text)
        val_f1 = pl_module.selected_val_f1
        report = {
            "submission": str(self.written), "layout": self.layout, "images": len(rows),
            "predict_dir": str(files.folder), "class_names": class_names,
            "input_size": complexity["input_size"], "params": complexity["params"],
            "macs_fvcore": complexity["macs_fvcore"], "macs_competition": complexity["macs_competition"],
            "rules_ok": not complexity["rule_violations"], "rule_violations": complexity["rule_violations"],
            "val_macro_f1": val_f1,
            "score": None if val_f1 is None else competition_score(val_f1, complexity["macs_fvcore"], self.f1_base,
                                                                   self.macs_base),
            "f1_base": self.f1_base, "macs_base": self.macs_base, "checkpoint": trainer.ckpt_path,
            "inference": "single model, one forward pass per image, no test-time augmentation",
            "predicted_class_counts": {c: sum(1 for _, l in rows if l == c) for c in class_names},
            "unreadable_images": sorted(unreadable),
            "predict_fallback": fallback if unreadable else None,
            "skipped_files": files.skipped,
            "run_id": self.run_id, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write_text(out / "report.json", json.dumps(report, indent=2))
        for name in OUTPUTS:  # this run's files are complete: the set-aside ones are not needed any more
            (out / f"{name}.previous").unlink(missing_ok=True)
        self.message = (f"predicted {len(rows)} images ({complexity['macs_competition']:,} MACs by the competition's "
                        f"counter); wrote {self.written} and {out / 'report.json'}")

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """What predict wrote, said once the progress bar has closed its line (Lightning tears callbacks down after
        every ``on_predict_end``, the progress bar's included)."""
        if stage == "predict" and self.message:
            say(self.message)
            self.message = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """A predict that failed (even in the data module's setup, before ``on_predict_start``) leaves no
        ``submission.csv`` where it would have written one."""
        if trainer.state.fn != "predict" or self.written is not None:
            return
        target = self.target or free_output_dir(Path(self.out_dir or trainer.default_root_dir), self.overwrite)
        set_aside(target)
        if (target / "submission.csv.previous").exists():
            say(f"predict failed: no new submission in {target}; the previous one is now submission.csv.previous")
