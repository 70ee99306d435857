"""Deployment export: fold BN, write ONNX with the ``torch.export``-based exporter, check it matches the
PyTorch student in ONNX Runtime (the fastest CPU runtime measured for it, ``benchmarks/latency.py``).

    distill export runs/trashnet/student_kd/seed_0/model.pt --out runs/export --data ../shared/data/trashnet
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from distill.checkpoint import atomic_write, atomic_write_text, load_trained
from distill.competition import check_rules, competition_macs
from distill.complexity import count_macs
from distill.layout import read_layout
from distill.models import fuse_bn
from distill.preprocess import preprocess_files
from distill.runtime import ONNX_OPSET, onnx_session, to_onnx


@dataclass
class ExportReport:
    input_size: int
    macs_fvcore_before: int
    macs_fvcore_after: int
    macs_competition_before: int
    macs_competition_after: int
    rule_violations_after: list[str]
    fused_max_abs_diff: float
    onnx: str | None = None
    onnx_opset: int = ONNX_OPSET
    onnx_max_abs_diff: float | None = None
    same_predictions: bool = True
    notes: list[str] = field(default_factory=list)


def sample_inputs(model: nn.Module, data_root: str | None, base_size: int | None = None, n: int = 16) -> torch.Tensor:
    """Inputs for the check: the first ``n`` validation images of ``data_root`` through the deployment path
    (``distill.preprocess.preprocess_files`` at ``base_size``), else seeded noise."""
    size = model.preprocess.input_size
    if data_root is None:
        return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    _, train, val = read_layout(data_root)
    paths = [s.path for s in (val or train)[:n]]
    return preprocess_files(paths, base_size or size, model.preprocess)


def export_student(model: nn.Module, out_dir: str | Path, inputs: torch.Tensor, atol: float = 1e-4,
                   onnx: bool = True) -> ExportReport:
    """Fold BN, export, compare outputs on ``inputs``; writes ``student_fused.pt``, ``student.onnx``, ``export.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    size = model.preprocess.input_size
    fused = fuse_bn(model)
    with torch.no_grad():
        reference = model(inputs)
        fused_out = fused(inputs)
    report = ExportReport(
        input_size=size, macs_fvcore_before=count_macs(model, size).total, macs_fvcore_after=count_macs(fused, size).total,
        macs_competition_before=competition_macs(model, size), macs_competition_after=competition_macs(fused, size),
        rule_violations_after=check_rules(fused, size),
        fused_max_abs_diff=float((reference - fused_out).abs().max()),
    )
    atomic_write(out / "student_fused.pt", lambda tmp: torch.save(fused.state_dict(), tmp))
    predictions = [reference.argmax(1)]
    if onnx:
        session = onnx_session(to_onnx(fused, out / "student.onnx", inputs[:2]))
        onnx_out = torch.from_numpy(session.run(None, {"image": inputs.numpy()})[0])
        report.onnx, report.onnx_max_abs_diff = str(out / "student.onnx"), float((reference - onnx_out).abs().max())
        predictions.append(onnx_out.argmax(1))
    report.same_predictions = all(torch.equal(predictions[0], p) for p in predictions[1:])
    diffs = [d for d in (report.fused_max_abs_diff, report.onnx_max_abs_diff) if d is not None]
    if max(diffs) > atol:
        report.notes.append(f"outputs differ by up to {max(diffs):.2e} (> {atol})")
    atomic_write_text(out / "export.json", json.dumps(asdict(report), indent=2))
    return report


def run(args: argparse.Namespace) -> None:
    """``distill export`` (arguments: ``distill.command_args.export_parser``)."""
    model, meta = load_trained(args.model)
    report = export_student(model, args.out, sample_inputs(model, args.data, meta["base_size"]), args.atol)
    out = Path(args.out)
    verdict = "ok" if not report.rule_violations_after else "; ".join(report.rule_violations_after)
    print(f"exported (BN folded): {report.macs_competition_after:,} MACs by the competition's counter (the scored "
          f"count; fvcore {report.macs_fvcore_after:,}), rules {verdict}, largest output difference "
          f"{max(d for d in (report.fused_max_abs_diff, report.onnx_max_abs_diff) if d is not None):.1e}"
          + ("" if report.same_predictions else ", PREDICTIONS DIFFER")
          + f"; wrote {out / 'student_fused.pt'}" + (f", {report.onnx}" if report.onnx else "")
          + f" and {out / 'export.json'}")
    for note in report.notes:
        print(f"note: {note}")
    if report.notes and any("differ" in n for n in report.notes):
        raise SystemExit(1)
