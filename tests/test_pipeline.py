import csv
import json

import numpy as np
import pytest
import yaml

from distill.competition import competition_score
from distill.evaluation import compare_files, macro_f1
from distill.pipeline import run_pipeline
from distill.recipe import Recipe, merge, parse_setting, split_settings
from distill.stages import StageRecord


def test_pipeline_end_to_end_reuses_and_resumes_stages(demo_root, tmp_path, capsys, small_teacher):
    out = tmp_path / "out"
    fast = {"trainer": {"max_epochs": 2, "limit_train_batches": 3, "enable_progress_bar": False}, "teacher_cache": {"views": 2, "backend": "torch"},
            "data": {"holdout_fraction": 0.2},
            "teacher": {"trainer": {"max_epochs": 1, "limit_train_batches": 3, "enable_progress_bar": False}}}
    fast = merge(fast, small_teacher)
    summary = run_pipeline(Recipe.find("demo"), out, str(demo_root), seeds=[0], baseline=True, predict_dir=None,
                           settings=fast, results_json=tmp_path / "result.json")
    said = capsys.readouterr().out  # the plan before the first stage, then how far the run is after each
    assert said.index("[estimate] this run: 4 stage(s) to run") < said.index("[progress] teacher done: 1 of 4")
    assert "[progress] student_ce/seed_0 done: 4 of 4 stage(s)" in said
    # --set teacher.* reaches the teacher's stage only; the rest the students'
    epochs = {stage: yaml.safe_load(open(StageRecord.load(out / stage / "stage.json").config))["trainer"]
              ["max_epochs"] for stage in ("teacher", "student_kd/seed_0", "student_ce/seed_0")}
    assert epochs == {"teacher": 1, "student_kd/seed_0": 2, "student_ce/seed_0": 2}
    result = json.loads((tmp_path / "result.json").read_text())  # a committed result names no machine paths
    assert result["selected_student"] == "student_kd/seed_0/model.pt" and result["submission"] == "submission.csv"
    assert json.loads((out / "summary.json").read_text()) == summary.to_json()  # the JSON is the Summary's fields
    printed = summary.report(out)
    assert f"score estimate            : {summary.score_estimate:.4f}" in printed and "held-out, no teacher" in printed
    # the held-out images: the same for the teacher (given the students' setting) and both students
    held = [json.loads((out / stage / "holdout.json").read_text())
            for stage in ("teacher", "student_kd/seed_0", "student_ce/seed_0")]
    assert held[0]["paths"] == held[1]["paths"] == held[2]["paths"] and len(held[0]["paths"]) > 0
    assert summary.student_kd_holdout_f1_per_seed == [held[1]["f1"]]
    # the score is estimated from the submitted student's held-out F1 (val chose the seed; held-out chose nothing)
    assert summary.score_estimate_from == "held-out" and summary.selected_holdout_f1 == held[1]["f1"]
    assert summary.score_estimate == pytest.approx(competition_score(held[1]["f1"], summary.student_macs))
    comparison = summary.kd_minus_ce_holdout
    # what a bootstrap guarantees: an ordered interval, the same one from the same files (a point estimate need not lie
    # inside a percentile interval)
    assert comparison["images"] == len(held[0]["paths"]) and comparison["low"] <= comparison["high"]
    assert comparison["resampled"] == "seeds and images"
    assert comparison == compare_files([(out / "student_kd/seed_0/holdout.json",)],
                                       [(out / "student_ce/seed_0/holdout.json",)], "held-out images")
    # and the last epoch's weights, no checkpoint selection: their own predictions on the same images
    last = [json.loads((out / stage / "holdout_last.json").read_text()) for stage in ("student_kd/seed_0", "student_ce/seed_0")]
    assert last[0]["paths"] == held[0]["paths"] and summary.student_kd_last_holdout_f1_per_seed == [last[0]["f1"]]
    assert summary.student_ce_last_holdout_f1_per_seed == [last[1]["f1"]]
    assert summary.kd_minus_ce_last_holdout["difference"] == pytest.approx(last[0]["f1"] - last[1]["f1"])
    records = {stage: json.loads((out / stage / "stage.json").read_text())
               for stage in ("teacher", "student_kd/seed_0", "student_ce/seed_0")}
    # the same weights on the val split (it watched them, chose nothing): val + held-out make one unseen set
    val_last = [json.loads((out / stage / "val_last.json").read_text()) for stage in ("student_kd/seed_0", "student_ce/seed_0")]
    assert val_last[0]["f1"] == pytest.approx(records["student_kd/seed_0"]["last_val_f1"], abs=1e-6)  # as logged
    assert not set(val_last[0]["paths"]) & set(held[0]["paths"])
    unseen = summary.kd_minus_ce_last_unseen
    assert unseen["images"] == len(val_last[0]["paths"]) + len(held[0]["paths"])
    joined = [macro_f1(np.array(v["labels"] + h["labels"]), np.array(v["preds"] + h["preds"]), 9)
              for v, h in zip(val_last, last)]
    assert unseen["kd_f1_per_seed"] == [joined[0]] and unseen["ce_f1_per_seed"] == [joined[1]]
    assert unseen["difference"] == pytest.approx(joined[0] - joined[1])
    assert summary.teacher_f1 == records["teacher"]["val_f1"]
    assert summary.student_kd_f1_per_seed == [records["student_kd/seed_0"]["val_f1"]]
    assert summary.student_ce_f1 == records["student_ce/seed_0"]["val_f1"] and summary.student_rules_ok
    assert summary.student_macs == 325_728 and summary.student_input_size == 64  # nano, 9 classes, 64 px
    rows = list(csv.reader(open(out / "submission.csv")))
    assert len(rows) - 1 == len(list((demo_root / "test" / "NoLabel").iterdir()))
    report = json.loads((out / "report.json").read_text())
    assert report["macs_fvcore"] == summary.student_macs
    assert json.loads((out / "summary.json").read_text())["seeds"] == [0]
    # the cache is a stage of its own, filled before any student: the KD stage found it complete
    fill = summary.seconds["teacher_cache_fill"]
    assert 0 < fill <= summary.seconds["teacher_cache"]
    assert json.loads((out / "teacher_cache" / "stage.json").read_text())["fill_seconds"] == fill
    assert json.loads((out / "student_kd" / "seed_0" / "stage.json").read_text())["cache_fill_seconds"] == 0

    stage = out / "student_kd" / "seed_0" / "stage.json"
    before = stage.stat().st_mtime_ns
    (out / "student_ce" / "seed_0" / "stage.json").unlink()  # as if killed after its last epoch
    capsys.readouterr()
    run_pipeline(Recipe.find("demo"), out, str(demo_root), seeds=[0], baseline=True, predict_dir=None,
                 settings=fast)
    printed = capsys.readouterr().out
    assert stage.stat().st_mtime_ns == before  # finished stages are reused, not retrained
    assert "reusing finished stage" in printed
    assert "resuming" in printed and (out / "student_ce" / "seed_0" / "stage.json").exists()
    import torch  # the stage's seconds across runs ride in its checkpoints (StageClock)
    states = torch.load(out / "student_ce/seed_0/checkpoints/last.ckpt", weights_only=True)["callbacks"]
    assert states["StageClock"]["seconds"] > 0
    assert json.loads((out / "summary.json").read_text())["seconds"]["teacher_cache_fill"] == fill
    # --teacher-only reuses the teacher's stage and records what it found
    only = run_pipeline(Recipe.find("demo"), out, str(demo_root), seeds=[0], baseline=False, predict_dir=None,
                        settings=fast, teacher_only=True, results_json=tmp_path / "teacher.json")
    assert only.teacher_holdout_f1 == summary.teacher_holdout_f1 == held[0]["f1"]
    assert only.teacher_last_holdout_f1 == summary.teacher_last_holdout_f1 == json.loads(
        (out / "teacher" / "holdout_last.json").read_text())["f1"]  # its last epoch's own predictions
    assert json.loads((tmp_path / "teacher.json").read_text()) == only.to_json()
    assert only.to_json() == json.loads((out / "teacher_summary.json").read_text())
    # the summary's own account of the run: the mean seed's score, the split, each stage's settings fingerprint
    assert summary.score_estimate_mean == pytest.approx(competition_score(held[1]["f1"], summary.student_macs))
    assert summary.holdout == {"fraction": 0.2, "seed": 0}
    assert set(summary.stages) == {"teacher", "student_kd/seed_0", "student_ce/seed_0"}
    assert summary.stages["student_ce/seed_0"] == records["student_ce/seed_0"]["fingerprint"]
    # a recipe's named no-teacher arms: trained beside the same-config arm, the verdict against the strongest
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "recipe.yaml").write_text("extends: demo\nbaselines:\n  wd01: {model: {init_args: {weight_decay: 0.1}}}\n")
    swept = run_pipeline(Recipe.find(sweep), out, str(demo_root), seeds=[0], baseline=True, predict_dir=None,
                         settings=fast)
    assert (out / "student_ce_wd01" / "seed_0" / "stage.json").exists()
    assert swept.student_kd_last_holdout_f1_per_seed == summary.student_kd_last_holdout_f1_per_seed  # reused
    arms = swept.no_teacher_arms
    assert set(arms) == {"same config", "wd01"} and arms["wd01"]["settings"] == {"model.init_args.weight_decay": 0.1}
    strongest = max(arms, key=lambda name: arms[name]["last_holdout_f1"])
    best = swept.kd_minus_best_no_teacher
    assert best["setting"] == strongest
    assert best["difference"] == pytest.approx(swept.student_kd_last_holdout_f1_per_seed[0]
                                               - arms[strongest]["last_holdout_f1"])
    # another student seed later: the teacher and its cache do not depend on --seeds, only that seed trains
    teacher_record = (out / "teacher" / "stage.json").stat().st_mtime_ns
    capsys.readouterr()
    more = run_pipeline(Recipe.find("demo"), out, str(demo_root), seeds=[1], baseline=False, predict_dir=None,
                        settings=fast)
    printed = capsys.readouterr().out
    assert (out / "teacher" / "stage.json").stat().st_mtime_ns == teacher_record and "reusing finished stage" in printed
    assert more.seeds == [1] and (out / "student_kd" / "seed_1" / "stage.json").exists()
    assert json.loads((out / "teacher_cache" / "stage.json").read_text())["fill_seconds"] == fill  # not refilled
    bad = tmp_path / "bad_sweep"
    bad.mkdir()
    (bad / "recipe.yaml").write_text("extends: demo\nbaselines:\n  typo: {model: {init_args: {weight_dekay: 0.1}}}\n")
    with pytest.raises(ValueError, match="no-teacher arm 'typo'"):  # checked before any stage
        run_pipeline(Recipe.find(bad), tmp_path / "bad_out", str(demo_root), seeds=[0], baseline=True,
                     predict_dir=None, settings=fast)


def test_a_results_command_names_no_absolute_path(tmp_path):
    from distill.summary import portable_command

    typed = f"distill pipeline --recipe trashnet --out {tmp_path}/run --results-json={tmp_path}/r.json --set 'a=b c'"
    assert portable_command(typed, tmp_path) == ("distill pipeline --recipe trashnet --out run --results-json=r.json "
                                                 "--set 'a=b c'")
    assert portable_command(typed, tmp_path / "sub").split()[5] == "../run"


def test_recipes_and_settings(tmp_path):
    demo = Recipe.find("demo")
    assert [p.parent.name for p in demo.configs("student")] == ["base", "demo"]
    with pytest.raises(FileNotFoundError, match="shipped: .*trashnet"):
        Recipe.find("no_such_recipe")
    (tmp_path / "teacher.yaml").write_text("trainer: {max_epochs: 1}\n")
    with pytest.raises(FileNotFoundError, match="student.yaml not found"):
        Recipe.find(tmp_path)
    assert parse_setting("model.init_args.lr=0.01") == {"model": {"init_args": {"lr": 0.01}}}
    assert parse_setting("teacher_cache.enabled=false") == {"teacher_cache": {"enabled": False}}
    with pytest.raises(Exception, match="KEY=VALUE"):
        parse_setting("max_epochs")
    teacher, students = split_settings({**parse_setting("teacher.trainer.max_epochs=2"),
                                        **parse_setting("model.init_args.teacher.precision=32")})
    assert teacher == {"trainer": {"max_epochs": 2}}
    assert students == {"model": {"init_args": {"teacher": {"precision": 32}}}}
    with pytest.raises(ValueError, match="teacher.trainer.max_epochs=2"):
        split_settings(parse_setting("teacher=1"))


def test_recipe_extending_another_and_prune_settings(tmp_path):
    folder = tmp_path / "pruned_demo"
    folder.mkdir()
    (folder / "recipe.yaml").write_text("extends: demo\n")
    (folder / "prune.yaml").write_text("macs: 200000\ntrain: {model: {init_args: {student: micro}}}\n")
    recipe = Recipe.find(folder)
    assert [p.parent.name for p in recipe.configs("student")] == ["base", "demo"]
    assert recipe.prune()["macs"] == 200000 and Recipe.find("demo").prune() is None
    (folder / "prune.yaml").write_text("macs: lots\n")
    with pytest.raises(ValueError, match="macs"):
        recipe.prune()
    assert recipe.teachers() == [{}]  # one teacher, teacher.yaml as it is (demo's)
    (folder / "recipe.yaml").write_text("extends: demo\nteachers: {data: {augment: strong}}\n")
    with pytest.raises(ValueError, match="recipe.yaml: teachers must be a non-empty list"):
        Recipe.find(folder).teachers()
    (folder / "recipe.yaml").write_text("extends: demo\nteacher: [{}]\n")
    with pytest.raises(ValueError, match=r"recipe.yaml: unknown keys \['teacher'\]"):
        Recipe.find(folder)


def test_pipeline_prunes_a_larger_student_to_the_budget(demo_root, tmp_path, small_teacher):
    folder = tmp_path / "recipe"
    folder.mkdir()
    (folder / "recipe.yaml").write_text("extends: demo\n")
    (folder / "teacher.yaml").write_text("trainer: {max_epochs: 1}\n")
    (folder / "prune.yaml").write_text("macs: 300000\ntrain: {model: {init_args: {student: micro}}}\n")
    fast = {"trainer": {"max_epochs": 1, "limit_train_batches": 2, "enable_progress_bar": False},
            "teacher_cache": {"views": 2, "backend": "torch"},
            "teacher": {"trainer": {"limit_train_batches": 2, "enable_progress_bar": False}}}
    fast = merge(fast, small_teacher)
    out = tmp_path / "out"
    summary = run_pipeline(Recipe.find(folder), out, str(demo_root), seeds=[0], baseline=False, predict_dir=None,
                           settings=fast)
    large = json.loads((out / "student_large" / "seed_0" / "stage.json").read_text())
    assert large["input_size"] == 64 and (out / "student_pruned" / "seed_0" / "model.pt").is_file()
    assert 0.98 * 300_000 <= summary.student_macs <= 300_000 and summary.student_rules_ok
    assert summary.selected_student.endswith("student_kd/seed_0/model.pt")
    assert summary.seconds["teacher_cache_fill"] > 0  # filled for the larger student, reused after pruning


def test_a_stage_can_export_the_last_epoch_instead_of_the_best_val_f1(demo_root, tmp_path):
    from distill.checkpoint import read_model_file
    from distill.stages import run_fit

    settings = {"data": {"root": str(demo_root), "holdout_fraction": 0.2, "image_size": 32},
                "model": {"init_args": {"teacher": None, "student": "nano"}},
                "trainer": {"max_epochs": 3, "limit_train_batches": 2, "enable_progress_bar": False},
                "checkpoint": {"monitor": "epoch", "mode": "max"}}
    configs = Recipe.find("demo").configs("student")
    record = run_fit(configs, tmp_path / "last", settings, seed=0)
    assert read_model_file(record.checkpoint)["epoch"] == 2  # the last of 3 epochs
    assert record.val_f1 == record.last_val_f1  # the exported weights' val F1, not the epoch it ranked by
    held, last = (json.loads(open(f).read()) for f in (record.holdout_file, record.last_holdout_file))
    assert held["preds"] == last["preds"] and record.holdout_f1 == record.last_holdout_f1
    # a monitor whose score is not the exported weights' val F1 fails before any training
    with pytest.raises(ValueError, match="checkpoint.monitor='val/loss'"):
        run_fit(configs, tmp_path / "bad", merge(settings, {"checkpoint": {"monitor": "val/loss", "mode": "min"}}), 0)
    assert not (tmp_path / "bad" / "checkpoints").exists()
    # and the pipeline rejects it before its first stage (the teacher's fine-tune)
    from distill.stage_checks import check_stages

    teacher = [{"data": {"root": str(demo_root)}}]  # one settings dict per teacher fine-tune
    with pytest.raises(ValueError, match="checkpoint.monitor='val/loss'"):
        check_stages(Recipe.find("demo"), teacher, merge(settings, {"checkpoint": {"monitor": "val/loss", "mode": "min"}}))
    check_stages(Recipe.find("demo"), teacher, settings)
    # validation (and so the checkpoints) every N epochs: the last epoch must be one of them
    with pytest.raises(ValueError, match="max_epochs=3 is not a multiple of trainer.check_val_every_n_epoch=2"):
        check_stages(Recipe.find("demo"), teacher, merge(settings, {"trainer": {"check_val_every_n_epoch": 2}}))
    check_stages(Recipe.find("demo"), teacher, merge(settings, {"trainer": {"check_val_every_n_epoch": 3}}))


def test_the_students_teacher_must_be_the_network_the_fine_tune_trains(demo_root):
    """``--set teacher.model.init_args.net=efficientnet_lite2`` alone would fine-tune a Lite2 and then build a Lite0
    to load it into after the fine-tune: the pipeline names both options before any stage runs."""
    from distill.stage_checks import check_stages

    data = {"data": {"root": str(demo_root)}}
    lite2 = merge(data, {"model": {"init_args": {"net": "efficientnet_lite2"}}})
    with pytest.raises(ValueError, match=r"the teacher is fine-tuned as efficientnet_lite2 \(teacher.model.init_args.net\)"
                                         r" but the students are taught by efficientnet_lite0 \(model.init_args.teacher.name\)"):
        check_stages(Recipe.find("demo"), [lite2], data)
    check_stages(Recipe.find("demo"), [lite2], merge(data, {"model": {"init_args": {"teacher": {"name": "efficientnet_lite2"}}}}))
    check_stages(Recipe.find("demo"), [lite2], merge(data, {"model": {"init_args": {"teacher": None}}}))  # no teacher
    with pytest.raises(ValueError, match=r"teacher 2 of 2 \(recipe.yaml teachers\[1\]\) is fine-tuned as efficientnet_lite2"):
        check_stages(Recipe.find("demo"), [data, lite2], data)


def test_pipeline_with_a_teacher_ensemble(demo_root, tmp_path, quick_pipeline):
    """``teachers`` in recipe.yaml: one fine-tune each (its own overrides), the students learn from their
    ensemble, which is scored on the val and held-out images like every stage."""
    folder = tmp_path / "recipe"
    folder.mkdir()
    (folder / "recipe.yaml").write_text("extends: demo\nteachers: [{}, {data: {augment: strong}}]\n")
    out = tmp_path / "out"
    summary = run_pipeline(Recipe.find(folder), out, str(demo_root), seeds=[0], baseline=False, predict_dir=None,
                           settings=quick_pipeline)
    configs = {stage: yaml.safe_load(open(StageRecord.load(out / stage / "stage.json").config))
               for stage in ("teacher", "teacher_2", "student_kd/seed_0")}
    assert configs["teacher"]["data"]["augment"] == "light" and configs["teacher_2"]["data"]["augment"] == "strong"
    assert configs["teacher_2"]["trainer"]["max_epochs"] == 1  # --set teacher.* reaches every member
    members = [json.loads((out / stage / "stage.json").read_text()) for stage in ("teacher", "teacher_2")]
    assert configs["student_kd/seed_0"]["model"]["init_args"]["teacher"]["weights"] == [
        StageRecord.load(out / stage / "stage.json").model_file for stage in ("teacher", "teacher_2")]
    ensemble = json.loads((out / "teacher_ensemble" / "stage.json").read_text())
    assert summary.teacher_f1 == ensemble["val_f1"] and summary.teacher_holdout_f1 == ensemble["holdout_f1"]
    assert ensemble["model_file"] is ensemble["checkpoint"] is ensemble["config"] is None  # the members hold files
    assert summary.teacher_members_f1 == [m["val_f1"] for m in members]
    held = [json.loads((out / stage / "holdout.json").read_text()) for stage in ("teacher", "teacher_ensemble")]
    assert held[0]["paths"] == held[1]["paths"] and ensemble["holdout_f1"] == held[1]["f1"]
    assert held[1]["f1"] == pytest.approx(macro_f1(np.array(held[1]["labels"]), np.array(held[1]["preds"]), 9))
    # a typo in one entry is named before any fine-tune
    from distill.stage_checks import check_stages

    bad = [{"data": {"root": str(demo_root)}}, {"data": {"root": str(demo_root), "augmnet": "strong"}}]
    with pytest.raises(ValueError, match=r"teacher 2 of 2 \(recipe.yaml teachers\[1\]\).*augmnet"):
        check_stages(Recipe.find(folder), bad, {"data": {"root": str(demo_root)}})


def test_every_shipped_recipe_parses_and_target_is_trashnets_on_other_data(demo_root):
    """The shipped recipes' stages parse (a typo in a recipe file fails here, not after a teacher's fine-tune); the
    competition's ``target`` recipe is ``trashnet``'s teacher and students with only the data root its own."""
    from distill.stage_checks import check_stages

    names = Recipe.shipped_names()
    assert {"demo", "trashnet", "target"} <= set(names)
    data = {"data": {"root": str(demo_root)}}
    for name in names:
        recipe = Recipe.find(name)
        check_stages(recipe, [merge(data, member) for member in recipe.teachers()], data)
    target, trashnet = Recipe.find("target"), Recipe.find("trashnet")
    assert [p.parent.name for p in target.configs("student")] == ["base", "trashnet", "target"]
    assert target.data() == {**trashnet.data(), "root": "/path/to/target/data"}
    assert target.data("teacher") == {**trashnet.data("teacher"), "root": "/path/to/target/data"}


def test_the_submitted_student_trains_once_more_on_the_held_out_images_too(demo_root, tmp_path, quick_pipeline,
                                                                           capsys):
    """--final (the command's default): after the verdict the seed val chose trains again, its own settings, on every
    image including the held-out ones (with the teacher's outputs on them cached), and that model is submitted; the
    verdict's figures stay those of the held-out runs."""
    out = tmp_path / "out"
    summary = run_pipeline(Recipe.find("demo"), out, str(demo_root), seeds=[0, 1], baseline=False, predict_dir=None,
                           settings=quick_pipeline, final=True, results_json=tmp_path / "result.json")
    said = capsys.readouterr().out
    final = out / "student_final" / f"seed_{summary.selected_seed}"
    assert summary.submitted_student == str(final / "model.pt") != summary.selected_student
    assert "held-out ones too" in summary.submitted_trained_on and "student_final" in summary.report(out)
    assert "[estimate] this run: 6 stage(s) to run" in said and "[progress] student_final done: 6 of 6" in said
    settings = json.loads((final / "settings.json").read_text())["settings"]
    assert settings["data.holdout_fraction"] == 0.0 and settings["seed_everything"] == summary.selected_seed
    cached = json.loads((out / "teacher_cache_final" / "stage.json").read_text())["images"]
    assert cached > json.loads((out / "teacher_cache" / "stage.json").read_text())["images"]  # the held-out added
    report = json.loads((out / "report.json").read_text())
    assert report["checkpoint"].startswith(str(final))  # the submission's model
    record = StageRecord.load(out / "student_kd" / f"seed_{summary.selected_seed}" / "stage.json")
    assert summary.selected_holdout_f1 == record.holdout_f1  # the verdict: the held-out run's own figure
    assert json.loads((tmp_path / "result.json").read_text())["submitted_student"] == (
        f"student_final/seed_{summary.selected_seed}/model.pt")
