"""A stage folder is reused only for the question it answered, from wherever it lies, and a folder of data or
outputs never hides a shipped recipe of the same name."""
import json
import os
import shutil
from pathlib import Path

import pytest

from distill.recipe import Recipe, merge
from distill.stages import StageMismatchError, StageRecord, run_fit


def student_settings(demo_root) -> dict:
    return {"data": {"root": str(demo_root), "holdout_fraction": 0.2, "image_size": 32},
            "model": {"init_args": {"teacher": None, "student": "nano"}},
            "trainer": {"max_epochs": 1, "limit_train_batches": 2, "enable_progress_bar": False}}


def test_a_changed_setting_never_reuses_or_resumes_the_old_stage(demo_root, tmp_path):
    configs = Recipe.find("demo").configs("student")
    settings = student_settings(demo_root)
    run_fit(configs, tmp_path / "stage", settings, seed=0)
    record = tmp_path / "stage" / "stage.json"
    changed = merge(settings, {"model": {"init_args": {"distill_weight": 0.5}}})  # the demo recipe's is 0.7
    with pytest.raises(StageMismatchError, match=r"model\.init_args\.distill_weight: 0\.7 -> 0\.5"):
        run_fit(configs, tmp_path / "stage", changed, seed=0)
    with pytest.raises(StageMismatchError, match=r"seed_everything: 0 -> 1"):
        run_fit(configs, tmp_path / "stage", settings, seed=1)
    # an interrupted stage (last.ckpt, no record) is not resumed with other settings either
    record.unlink()
    (tmp_path / "stage" / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(StageMismatchError, match="neither reused nor resumed"):
        run_fit(configs, tmp_path / "stage", changed, seed=0)
    # a damaged record of the settings: named, nothing reused
    (tmp_path / "stage" / "settings.json").write_text("{trunc")
    with pytest.raises(StageMismatchError, match=r"settings.json is damaged"):
        run_fit(configs, tmp_path / "stage", settings, seed=0)
    # the same settings: reused, not trained again
    run_fit(configs, tmp_path / "other", settings, seed=0)
    again = (tmp_path / "other" / "stage.json").stat().st_mtime_ns
    run_fit(configs, tmp_path / "other", settings, seed=0)
    assert (tmp_path / "other" / "stage.json").stat().st_mtime_ns == again
    # how progress is shown is not what the stage computes: still the same stage
    run_fit(configs, tmp_path / "other", merge(settings, {"trainer": {"enable_progress_bar": True}}), seed=0)
    assert (tmp_path / "other" / "stage.json").stat().st_mtime_ns == again


def test_a_failed_start_does_not_pin_the_stage_to_its_settings(demo_root, tmp_path):
    configs = Recipe.find("demo").configs("student")
    settings = student_settings(demo_root)
    with pytest.raises(ValueError, match="checkpoint.monitor"):
        run_fit(configs, tmp_path / "stage", merge(settings, {"checkpoint": {"monitor": "val/loss", "mode": "min"}}), 0)
    run_fit(configs, tmp_path / "stage", settings, 0)  # the corrected settings train in the same folder


def test_a_moved_or_copied_run_folder_reuses_its_own_files_from_any_directory(demo_root, tmp_path, monkeypatch,
                                                                                capsys):
    configs = Recipe.find("demo").configs("student")
    settings = student_settings(demo_root)
    monkeypatch.chdir(tmp_path)
    run_fit(configs, tmp_path / "runs" / "a", settings, seed=0)  # run from tmp_path, a relative --out
    stored = json.loads((tmp_path / "runs" / "a" / "stage.json").read_text())
    assert stored["model_file"] == "model.pt" and not os.path.isabs(stored["checkpoint"])
    shutil.copytree(tmp_path / "runs" / "a", tmp_path / "copy")
    shutil.move(tmp_path / "runs" / "a", tmp_path / "moved")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    for folder in ("moved", "copy"):
        mtime = (tmp_path / folder / "stage.json").stat().st_mtime_ns
        capsys.readouterr()
        record = run_fit(configs, tmp_path / folder, settings, seed=0)
        assert "reusing finished stage" in capsys.readouterr().out
        assert (tmp_path / folder / "stage.json").stat().st_mtime_ns == mtime  # not trained again
        for key in StageRecord.PATHS:  # every file of the record is the folder's own
            value = getattr(record, key)
            if value is not None:
                assert os.path.realpath(value).startswith(os.path.realpath(tmp_path / folder)), (key, value)
                assert os.path.exists(value), (key, value)


def test_a_folder_that_holds_no_recipe_does_not_hide_a_shipped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo" / "data").mkdir(parents=True)  # what `distill pipeline --demo demo` writes first
    (tmp_path / "trashnet").mkdir()
    assert Recipe.find("demo").folder == Recipe.shipped() / "demo"
    assert Recipe.find("trashnet").folder == Recipe.shipped() / "trashnet"
    (tmp_path / "mine").mkdir()
    for name in ("teacher.yaml", "student.yaml"):
        (tmp_path / "mine" / name).write_text("{}\n")
        (tmp_path / "demo" / name).write_text("{}\n")
    assert Recipe.find("demo").folder.resolve() == (tmp_path / "demo").resolve()  # a local recipe of that name
    assert Recipe.find("mine").folder.resolve() == (tmp_path / "mine").resolve()
    with pytest.raises(FileNotFoundError, match="teacher.yaml not found"):
        Recipe.find("./trashnet")  # given as a path: that folder or nothing


def test_pipeline_checks_the_data_root_before_writing_anything(tmp_path, capsys):
    from distill.commands import main

    with pytest.raises(SystemExit) as stop:
        main(["pipeline", "--recipe", "demo", "--out", str(tmp_path / "out"), "--data-root", str(tmp_path / "nope")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "data root not found" in err and "give --data-root DIR" in err
    assert not (tmp_path / "out").exists()


def test_a_moved_pipeline_folder_reruns_from_elsewhere_without_training(demo_root, tmp_path, monkeypatch, capsys,
                                                                         small_teacher):
    """The whole pipeline: run into a relative --out, move the folder, rerun from another directory: every stage is
    reused (no fit), the cache found complete, and the submission written from the moved folder's own files."""
    from distill.pipeline import run_pipeline

    fast = merge({"trainer": {"max_epochs": 1, "limit_train_batches": 2, "enable_progress_bar": False},
                  "teacher_cache": {"views": 2, "backend": "torch"}, "data": {"holdout_fraction": 0.2},
                  "teacher": {"trainer": {"max_epochs": 1, "limit_train_batches": 2, "enable_progress_bar": False}}},
                 small_teacher)
    monkeypatch.chdir(tmp_path)
    run_pipeline(Recipe.find("demo"), Path("first"), str(demo_root), seeds=[0], baseline=False, predict_dir=None,
                 settings=fast)
    shutil.move(tmp_path / "first", tmp_path / "moved")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    capsys.readouterr()
    summary = run_pipeline(Recipe.find("demo"), Path("../moved"), str(demo_root), seeds=[0], baseline=False,
                           predict_dir=None, settings=fast)
    printed = capsys.readouterr().out
    assert "[pipeline] fit" not in printed and printed.count("reusing finished stage") == 2
    assert "complete already: reused" in printed
    assert os.path.realpath(summary.selected_student) == os.path.realpath(tmp_path / "moved" / "student_kd" /
                                                                              "seed_0" / "model.pt")
    assert os.path.realpath(summary.submission) == os.path.realpath(tmp_path / "moved" / "submission.csv")


def test_an_unknown_recipe_names_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"recipe 'trashnett': no such folder.*'target', 'trashnet'"):
        Recipe.find("trashnett")
