import json

import pytest
import torch
from distill.models import create_model

from distill.checkpoint import load_trained, save_trained
from distill.complexity import count_macs
from distill.export import export_student, sample_inputs


def trained_like_student():
    torch.manual_seed(0)
    model = create_model("nano", 9, input_size=32)
    model.train()
    for _ in range(3):
        model(torch.randn(8, 3, 32, 32))  # non-trivial BN statistics
    return model.eval()


def test_export_outputs_match_and_bn_folding_reduces_macs(tmp_path, demo_root):
    pytest.importorskip("onnxruntime")
    model = trained_like_student()
    inputs = sample_inputs(model, str(demo_root))
    assert inputs.shape[1:] == (3, 32, 32)
    report = export_student(model, tmp_path, inputs)
    assert report.macs_fvcore_after < report.macs_fvcore_before
    assert report.rule_violations_after == []
    assert report.fused_max_abs_diff < 1e-4
    assert report.onnx_max_abs_diff < 1e-4
    assert report.same_predictions
    saved = json.loads((tmp_path / "export.json").read_text())
    assert saved["onnx_opset"] == 18 and (tmp_path / "student.onnx").exists()


def test_saved_model_roundtrip(tmp_path):
    model = trained_like_student()
    save_trained(tmp_path / "m.pt", model, model.spec.to_dict(), 9, [f"c{i}" for i in range(9)])
    again, meta = load_trained(tmp_path / "m.pt")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), again(x)) and meta["input_size"] == 32 and meta["class_names"][0] == "c0"


def test_report_card_files_and_numbers(tmp_path, demo_root):
    from distill.data import WasteDataModule
    from distill.report import report_card

    model = trained_like_student()
    dm = WasteDataModule(str(demo_root), image_size=32, augment="none")
    card = report_card(model, dm, tmp_path)
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000
    assert "confusion_matrix.png" in (tmp_path / "report_card.md").read_text()
    confusion = torch.tensor(card["confusion_matrix"])
    assert card["split"] == "val" and confusion.sum() == card["images"] == len(dm.val_set)
    assert sum(v["support"] for v in card["per_class"].values()) == card["images"]
    mean_f1 = sum(v["f1"] for v in card["per_class"].values()) / 9
    assert card["macro_f1"] == pytest.approx(mean_f1, abs=1e-6)
    assert card["latency_ms_batch1_1thread"] > 0 and card["macs_fvcore"] == count_macs(model, 32).total


def test_report_scores_the_held_out_split_a_model_file_records(tmp_path, demo_root, capsys):
    """``distill report`` on a pipeline's model scores the images the recipe held out, the pipeline's figure."""
    import numpy as np

    from distill.command_args import PARSERS
    from distill.data import WasteDataModule
    from distill.evaluation import macro_f1, predict_labels
    from distill.report import run

    model = trained_like_student()
    classes = WasteDataModule(str(demo_root)).class_names
    save_trained(tmp_path / "m.pt", model, model.spec.to_dict(), 9, classes, base_size=32,
                 holdout={"fraction": 0.2, "seed": 3})
    run(PARSERS["report"]().parse_args([str(tmp_path / "m.pt"), "--data", str(demo_root), "--out", str(tmp_path / "c")]))
    card = json.loads((tmp_path / "c" / "report_card.json").read_text())
    held = WasteDataModule(str(demo_root), image_size=32, augment="none", holdout_fraction=0.2, holdout_seed=3)
    held.setup("test")
    expected = macro_f1(np.array([s.label for s in held.holdout_samples]), predict_labels(model, held.holdout_set), 9)
    assert card["split"] == "held-out" and card["images"] == len(held.holdout_samples) > 0
    assert card["macro_f1"] == pytest.approx(expected, abs=1e-6)
    assert "held-out macro F1" in capsys.readouterr().out
    save_trained(tmp_path / "old.pt", model, model.spec.to_dict(), 9, classes, base_size=32)  # no split recorded
    run(PARSERS["report"]().parse_args([str(tmp_path / "old.pt"), "--data", str(demo_root), "--out", str(tmp_path / "d")]))
    assert "records no held-out split" in capsys.readouterr().out
    assert json.loads((tmp_path / "d" / "report_card.json").read_text())["split"] == "val"


def test_deployment_path_is_the_training_path(demo_root):
    from distill.data import WasteDataModule
    from distill.preprocess import model_input, preprocess_files

    model = trained_like_student()
    dm = WasteDataModule(str(demo_root), image_size=48, augment="none")
    dm.setup("validate")
    assert dm.train_set is None  # validation decodes only the validation images
    paths = [s.path for s in dm.val_samples[:5]]
    from_files = preprocess_files(paths, 48, model.preprocess)
    in_training = model_input(torch.stack([dm.val_set[i]["image"] for i in range(5)]), model.preprocess)
    assert from_files.shape == (5, 3, 32, 32) and torch.equal(from_files, in_training)
    assert torch.equal(sample_inputs(model, str(demo_root), base_size=48, n=5), from_files)
