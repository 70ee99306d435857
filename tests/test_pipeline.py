import csv
import json

from distill.pipeline import REPO, run_pipeline


def test_pipeline_end_to_end_reuses_and_resumes_stages(demo_root, tmp_path, capsys):
    out = tmp_path / "out"
    fast = ["--trainer.max_epochs=2", "--trainer.enable_progress_bar=false", "--teacher_cache.views=2"]
    summary = run_pipeline(REPO / "recipes" / "demo", out, str(demo_root), seeds=[0], baseline=True,
                           predict_dir=None, student_overrides=fast)
    assert 0 <= summary["teacher_f1"] <= 1 and len(summary["student_kd_f1_per_seed"]) == 1
    assert summary["student_ce_f1"] is not None and summary["student_rules_ok"]
    assert summary["student_macs"] > 0 and summary["student_input_size"] == 64
    rows = list(csv.reader(open(out / "submission.csv")))
    assert len(rows) - 1 == len(list((demo_root / "test" / "NoLabel").iterdir()))
    report = json.loads((out / "report.json").read_text())
    assert report["macs_fvcore"] == summary["student_macs"]
    assert json.loads((out / "summary.json").read_text())["seeds"] == [0]

    stage = out / "student_kd" / "seed_0" / "stage.json"
    before = stage.stat().st_mtime_ns
    (out / "student_ce" / "seed_0" / "stage.json").unlink()  # as if killed after its last epoch
    capsys.readouterr()
    run_pipeline(REPO / "recipes" / "demo", out, str(demo_root), seeds=[0], baseline=True, predict_dir=None,
                 student_overrides=fast)
    printed = capsys.readouterr().out
    assert stage.stat().st_mtime_ns == before  # finished stages are reused, not retrained
    assert "reusing finished stage" in printed
    assert "resuming" in printed and (out / "student_ce" / "seed_0" / "stage.json").exists()
