import csv
import json

import pytest
import torch

from distill.competition import competition_score
from distill.search import (
    Candidate,
    best_by_score,
    candidates,
    f1_for_score,
    pareto_front,
    run_search,
)


def test_grid_and_seeded_budget():
    grid = candidates(["nano", "micro"], [48, 64], [0.5, 1.0], None, 0)
    assert len(grid) == 8
    sample = candidates(["nano", "micro"], [48, 64], [0.5, 1.0], 3, seed=1)
    assert len(sample) == 3 and sample == candidates(["nano", "micro"], [48, 64], [0.5, 1.0], 3, seed=1)


def test_pareto_front_and_cliff_margin():
    rows = [{"name": "a", "macs_fvcore": 100, "val_f1": 0.60, "score": 0.5},
            {"name": "b", "macs_fvcore": 200, "val_f1": 0.80, "score": 0.2},
            {"name": "c", "macs_fvcore": 300, "val_f1": 0.70, "score": 0.3},  # dominated by b
            {"name": "d", "macs_fvcore": 50, "val_f1": 0.52, "score": 0.1}]
    assert [r["name"] for r in pareto_front(rows)] == ["d", "a", "b"]
    assert best_by_score(rows, margin=0.0)["name"] == "d"
    assert best_by_score(rows, margin=0.05)["name"] == "b"  # d is too close to the 0.5 cliff


def test_iso_score_inverse():
    for f1 in (0.6, 0.8, 0.9):
        score = competition_score(f1, 1e6)
        assert f1_for_score(score, 1e6, 0.8367, 13_878_369) == pytest.approx(f1)


def test_search_writes_csv_png_and_resumes(demo_root, tmp_path):
    from distill.models import create_model

    from distill.recipe import Recipe

    weights = tmp_path / "teacher.pt"
    torch.save(create_model("resnet18", 9).state_dict(), weights)
    folder = tmp_path / "recipe"
    folder.mkdir()
    (folder / "teacher.yaml").write_text("trainer: {max_epochs: 1}\n")
    (folder / "student.yaml").write_text(
        "trainer:\n  logger: false\n  limit_train_batches: 2\n"
        "data:\n  image_size: 40\n  batch_size: 16\n  augment: light\n"
        "model:\n  init_args:\n    teacher:\n      name: resnet18\n      input_size: 32\n"
        "teacher_cache:\n  views: 2\n  backend: torch\n")
    recipe = Recipe.find(folder)
    grid = [Candidate("nano", 32, 1.0), Candidate("nano", 32, 0.5)]
    summary = run_search(recipe, str(weights), tmp_path / "out", str(demo_root), grid, epochs=1)
    rows = list(csv.DictReader((tmp_path / "out" / "search.csv").open()))
    assert [r["name"] for r in rows] == ["nano_s32_w1", "nano_s32_w0.5"]
    assert int(rows[1]["macs_fvcore"]) < int(rows[0]["macs_fvcore"])
    for row in rows:  # each row is its stage's record, scored by the competition's formula
        record = json.loads((tmp_path / "out" / "runs" / row["name"] / "stage.json").read_text())
        assert float(row["val_f1"]) == pytest.approx(record["val_f1"], abs=1e-6)
        assert float(row["score"]) == pytest.approx(competition_score(record["val_f1"], int(row["macs_fvcore"])),
                                                    abs=1e-6)
    assert (tmp_path / "out" / "search.png").stat().st_size > 1000
    assert summary["best"]["name"] in {"nano_s32_w1", "nano_s32_w0.5"}
    assert len(list((tmp_path / "out" / "teacher_cache").glob("teacher_*.logits.npy"))) == 1  # filled once, shared
    # resumed: a third candidate is trained, the two finished ones are not
    mtime = (tmp_path / "out" / "runs" / "nano_s32_w1" / "stage.json").stat().st_mtime_ns
    grid.append(Candidate("nano", 40, 0.5))
    run_search(recipe, str(weights), tmp_path / "out", str(demo_root), grid, epochs=1)
    assert (tmp_path / "out" / "runs" / "nano_s32_w1" / "stage.json").stat().st_mtime_ns == mtime
    assert len(list(csv.DictReader((tmp_path / "out" / "search.csv").open()))) == 3
