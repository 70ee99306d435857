"""No silent wrong answers, errors a person can act on (issue: reliability, round 2). Each test reproduces
one case as a user would meet it, through the installed ``distill`` command where the behaviour is the
command's."""
import json
import multiprocessing
import os
import shutil
import stat
import sys
import time

import numpy as np
import pytest
import torch
from distill.models import create_model

from distill.cache import ViewCache, fill_share
from distill.checkpoint import (
    DamagedFileError,
    atomic_write_text,
    load_trained,
    save_trained,
)
from distill.cli import build_cli
from distill.commands import main as distill_main
from distill.data import WasteDataModule
from distill.demo import make_demo_dataset
from distill.pipeline import OutputInUseError, OutputLock, run_pipeline
from distill.recipe import Recipe, merge
from distill.teacher import FrozenTeacher

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A student trained for one epoch on the demo data: (data root, its config.yaml, best.ckpt)."""
    base = tmp_path_factory.mktemp("trained")
    root = make_demo_dataset(base / "data", per_class=8, test_images=5, seed=3, min_side=20, max_side=40)
    out = base / "run"
    cli = build_cli(["fit", "--data.root", str(root), "--data.image_size", "32", "--data.batch_size", "16",
                     "--model.student", "nano", "--model.input_size", "32", "--model.teacher", "null",
                     "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(out), *QUIET])
    config = next(out.glob("lightning_logs/version_*/config.yaml"))
    return root, config, cli.trainer.checkpoint_callback.best_model_path


def predict(config, ckpt, *extra):
    distill_main(["predict", "--config", str(config), "--ckpt_path", str(ckpt), *QUIET, *extra])


# ---------------------------------------------------------------- 1. a damaged teacher cache is never used

def small_cache(root, cache_dir):
    dm = WasteDataModule(str(root), image_size=32, augment="strong", batch_size=8)
    dm.setup("fit")
    torch.manual_seed(0)
    teacher = FrozenTeacher(create_model("micro", 9, input_size=32), "32")
    cache = ViewCache(teacher, dm.train_set, cache_dir, 2, num_classes=9, student_size=16)
    cache.create()
    fill_share(cache)
    return teacher, dm.train_set


def test_truncated_or_altered_cache_is_refilled_not_used(fresh_demo, tmp_path, capsys):
    teacher, dataset = small_cache(fresh_demo, tmp_path)
    cache = ViewCache(teacher, dataset, tmp_path, 2, num_classes=9, student_size=16)
    good_logits = np.array(np.load(cache.logits_file))
    good_views = np.array(np.load(cache.views_file))
    assert cache.complete()

    with open(cache.logits_file, "r+b") as f:  # truncate: numpy would pad it with zeros if opened for writing
        f.truncate(cache.logits_file.stat().st_size - 64)
    opened = []
    real_load = np.load
    np.load = lambda *a, **k: opened.append(k.get("mmap_mode")) or real_load(*a, **k)
    try:
        cache.create()
        assert "wrong size" in capsys.readouterr().out and not cache.complete()
        fill_share(cache)
    finally:
        np.load = real_load
    assert np.array_equal(np.load(cache.logits_file), good_logits)

    views = np.load(cache.views_file, mmap_mode="r+")  # same size, other bytes: caught by the checksum
    views[1, 0, 0, 0, :4] ^= 0xFF
    views.flush()
    del views
    cache.create()
    assert "checksum" in capsys.readouterr().out and not cache.complete()
    fill_share(cache)
    assert np.array_equal(np.load(cache.views_file), good_views) and cache.complete()

    opened.clear()
    np.load = lambda *a, **k: opened.append(k.get("mmap_mode")) or real_load(*a, **k)
    try:  # a complete cache is read, never opened for writing
        cache.create()
        fill_share(cache)
        cache.dataset()
    finally:
        np.load = real_load
    assert "r+" not in opened and "w+" not in opened


# ---------------------------------------------------------------- 2. classes of the checkpoint vs the data root

def test_predict_on_other_class_folders_stops_with_both_lists(trained, tmp_path, capsys):
    root, config, ckpt = trained
    renamed = shutil.copytree(root, tmp_path / "renamed")
    for split in ("train", "val"):
        (renamed / split / "Battery").rename(renamed / split / "Zinc")
    with pytest.raises(SystemExit) as exit_info:
        predict(config, ckpt, "--data.root", str(renamed), "--submission.out_dir", str(tmp_path / "a"))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert "'Battery'" in err and "'Zinc'" in err and str(renamed) in err
    assert not (tmp_path / "a" / "submission.csv").exists()

    fewer = shutil.copytree(root, tmp_path / "fewer")
    for split in ("train", "val"):
        for folder in sorted((fewer / split).iterdir())[3:]:
            shutil.rmtree(folder)
    with pytest.raises(SystemExit):
        predict(config, ckpt, "--data.root", str(fewer), "--submission.out_dir", str(tmp_path / "b"))
    err = capsys.readouterr().err
    assert "trained on 9 classes" in err and "size mismatch" not in err


# ---------------------------------------------------------------- 3. damaged model files

def test_truncated_model_file_is_named_and_the_pipeline_rebuilds_the_stage(demo_root, tmp_path, capsys,
                                                                           small_teacher):
    model = create_model("nano", 9, input_size=32)
    path = save_trained(tmp_path / "model.pt", model, "nano", 9, base_size=32)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    with pytest.raises(DamagedFileError, match=f"model file {path} is damaged"):
        load_trained(path)
    with pytest.raises(SystemExit):
        distill_main(["report", str(path), "--data", str(demo_root), "--out", str(tmp_path / "card")])
    assert f"model file {path} is damaged" in capsys.readouterr().err

    out = tmp_path / "out"
    fast = {"trainer": {"max_epochs": 1, "enable_progress_bar": False, "limit_train_batches": 2},
            "teacher_cache": {"views": 1, "backend": "torch"},
            "teacher": {"trainer": {"max_epochs": 1, "limit_train_batches": 2, "enable_progress_bar": False}}}
    fast = merge(fast, small_teacher)
    run_pipeline(Recipe.find("demo"), out, str(demo_root), seeds=[0], baseline=False, predict_dir=None,
                 settings=fast, teacher_only=True)
    teacher_file = out / "teacher" / "model.pt"
    with open(teacher_file, "r+b") as f:
        f.truncate(teacher_file.stat().st_size - 100)
    capsys.readouterr()
    run_pipeline(Recipe.find("demo"), out, str(demo_root), seeds=[0], baseline=False, predict_dir=None,
                 settings=fast, teacher_only=True)
    assert "does not load" in capsys.readouterr().out
    load_trained(teacher_file)  # rebuilt


# ---------------------------------------------------------------- 4-6. errors a person can act on

def test_bad_set_value_names_the_option_and_key(capsys):
    with pytest.raises(SystemExit):
        distill_main(["pipeline", "--recipe", "demo", "--out", "x", "--set", "trainer.max_epochs=[1"])
    err = capsys.readouterr().err
    assert "--set 'trainer.max_epochs=[1'" in err and "trainer.max_epochs" in err and "Traceback" not in err
    assert len(err.splitlines()) < 12


def test_expected_errors_print_the_message_not_a_traceback(tmp_path, capsys, monkeypatch):
    argv = ["pipeline", "--recipe", "demo", "--out", str(tmp_path / "o"), "--data-root", str(tmp_path / "no_such_root")]
    monkeypatch.setenv("DISTILL_VERBOSE", "")
    with pytest.raises(SystemExit) as quiet:
        distill_main(argv)
    assert quiet.value.code == 2
    assert "data root not found" in capsys.readouterr().err  # the message, and the exit status; no traceback
    monkeypatch.setenv("DISTILL_VERBOSE", "1")
    with pytest.raises(FileNotFoundError, match="data root not found"):  # the traceback is Python's own
        distill_main(argv)


def test_every_stage_config_is_checked_before_the_teacher_trains(demo_root, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="nonsense"):
        run_pipeline(Recipe.find("demo"), out, str(demo_root), seeds=[0], baseline=False, predict_dir=None,
                     settings={"nonsense": 1})
    with pytest.raises(ValueError, match="lr"):
        run_pipeline(Recipe.find("demo"), out, str(demo_root), seeds=[0], baseline=False, predict_dir=None,
                     settings={"model": {"init_args": {"lr": "fast"}}})
    assert not (out / "teacher").exists()  # nothing ran


# ---------------------------------------------------------------- 7-9. weak spots

def test_class_without_training_images_is_named(fresh_demo):
    for image in (fresh_demo / "train" / "Glass").iterdir():
        image.unlink()
    with pytest.warns(UserWarning, match=r"no training image.*Glass \(\d+ in validation\)"):
        WasteDataModule(str(fresh_demo), image_size=32)


def test_images_in_sub_folders_of_the_predict_folder_are_reported(trained, tmp_path):
    root, config, ckpt = trained
    data = shutil.copytree(root, tmp_path / "data")
    nested = data / "test" / "NoLabel" / "more"
    nested.mkdir()
    shutil.copy(next((data / "test" / "NoLabel").glob("*.jpg")), nested / "deep.jpg")
    with pytest.warns(UserWarning, match="1 image.*sub-folders"):
        predict(config, ckpt, "--data.root", str(data), "--submission.out_dir", str(tmp_path / "o"))
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert list(report["skipped_files"]) == [str(nested / "deep.jpg")]
    assert report["images"] == len(list((data / "test" / "NoLabel").glob("*.jpg")))


def test_failed_predict_leaves_no_submission_that_passes_for_its_own(trained, tmp_path):
    root, config, ckpt = trained
    data = shutil.copytree(root, tmp_path / "data")
    out = tmp_path / "o"
    predict(config, ckpt, "--data.root", str(data), "--submission.out_dir", str(out))
    first = json.loads((out / "report.json").read_text())
    assert len(first["run_id"]) == 12
    (data / "test" / "NoLabel" / "broken.jpg").write_bytes(b"")  # the next predict fails in its data setup
    with pytest.raises(SystemExit):
        predict(config, ckpt, "--data.root", str(data), "--submission.out_dir", str(out),
                "--submission.overwrite", "true")
    assert not (out / "submission.csv").exists() and not (out / "report.json").exists()
    assert json.loads((out / "report.json.previous").read_text())["run_id"] == first["run_id"]


# ---------------------------------------------------------------- 10-11. concurrent runs, file modes

def test_second_pipeline_into_the_same_out_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    root = make_demo_dataset(tmp_path / "data", per_class=2, test_images=1, seed=0, min_side=20, max_side=30)
    with OutputLock(out, "distill pipeline --recipe demo"):
        with pytest.raises(OutputInUseError, match=rf"pid {os.getpid()}.*--recipe demo"):
            OutputLock(out).__enter__()
        with pytest.raises(SystemExit):
            distill_main(["pipeline", "--recipe", "demo", "--out", str(out), "--data-root", str(root)])
        assert "in use by another pipeline" in capsys.readouterr().err
    with OutputLock(out):  # released when the holder is done
        pass


def test_a_folder_there_before_the_lock_stays(tmp_path):
    """(A folder the lock made is removed when the run left it empty: the bad-value test below.)"""
    out = tmp_path / "out"
    out.mkdir()
    with OutputLock(out):
        pass
    assert [p.name for p in out.iterdir()] == [".distill.lock"]


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = atomic_write_text(tmp_path / "submission.csv", "image,label\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode


# ---------------------------------------------------------------- 12. prompt, safe stops (SIGTERM)

def fill_fixture(root, tmp_path):
    """A small teacher, a cache filled whole by one process (the reference), and ``made(name)``: an empty cache
    of the same settings."""
    dm = WasteDataModule(str(root), image_size=32, augment="strong", batch_size=8)
    dm.setup("fit")
    torch.manual_seed(0)
    teacher = FrozenTeacher(create_model("micro", 9, input_size=32), "32")

    def made(name: str) -> ViewCache:
        cache = ViewCache(teacher, dm.train_set, tmp_path / name, 4, num_classes=9, student_size=16)
        cache.create()
        return cache

    whole = made("whole")
    fill_share(whole, batch_size=8)
    return teacher, whole, made


def test_sigterm_during_the_fill_saves_it_and_the_rerun_resumes(fresh_demo, tmp_path):
    import signal

    from distill.stopping import StopRequested

    teacher, whole, made = fill_fixture(fresh_demo, tmp_path)
    cache = made("stopped")
    calls = []

    def forward(images):
        calls.append(len(images))
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` would, in the middle of the fill
        return teacher(images)

    with pytest.raises(StopRequested, match="saved at 16 of .* run the same command again") as stop:
        fill_share(cache, batch_size=8, forward=forward)
    assert stop.value.code == 143 and len(calls) == 2 and not cache.complete()
    fill_share(cache, batch_size=8)  # the rerun goes on from view 16
    assert cache.complete()
    assert np.array_equal(np.load(cache.logits_file), np.load(whole.logits_file))
    assert np.array_equal(np.load(cache.views_file), np.load(whole.views_file))


def run_distill_in_a_fork(argv: list[str], stderr_file, before=None) -> multiprocessing.Process:
    """``distill ARGV`` as the command runs it, in a process forked from this one (no new interpreter
    importing torch and Lightning; one torch thread, as forked workers use); its stderr goes to the file.
    ``before``: called first in the fork (to patch something there only)."""
    def command():
        if before is not None:
            before()
        torch.set_num_threads(1)
        with open(stderr_file, "w") as err:
            os.dup2(err.fileno(), 2)
            sys.stderr = os.fdopen(2, "w", buffering=1)
            distill_main(argv)

    process = multiprocessing.get_context("fork").Process(target=command)
    process.start()
    return process


def test_sigterm_during_a_fit_stops_within_a_batch_and_resumes(demo_root, tmp_path):
    import signal
    import time

    out = tmp_path / "run"
    options = ["--data.root", str(demo_root), "--data.image_size", "32", "--data.batch_size", "4",
               "--model.student", "nano", "--model.input_size", "32", "--model.teacher", "null",
               "--trainer.default_root_dir", str(out), "--last_checkpoint.dirpath", str(out / "checkpoints"), *QUIET]
    last = out / "checkpoints" / "last.ckpt"
    run = run_distill_in_a_fork(["fit", *options, "--trainer.max_epochs", "200"], tmp_path / "stderr.txt")
    try:
        deadline = time.time() + 240
        while not last.exists() and run.is_alive() and time.time() < deadline:
            time.sleep(0.2)
        assert last.exists(), "no epoch finished"
        os.kill(run.pid, signal.SIGTERM)
        sent = time.time()
        run.join(timeout=60)
        stopped_after = time.time() - sent
    finally:
        run.kill()
    err = (tmp_path / "stderr.txt").read_text()
    assert run.exitcode == 143, err[-2000:]
    assert "stopped by SIGTERM at epoch" in err and str(last) in err
    assert stopped_after < 20  # one batch, not the rest of the epoch (plus the process's own shutdown)
    epoch = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
    build_cli(["fit", *options, "--trainer.max_epochs", str(epoch + 2), "--ckpt_path", str(last)])  # resumed
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == epoch + 1


def test_sigterm_that_lightning_acts_on_first_still_exits_143_with_the_resume_line(demo_root, tmp_path):
    """SIGTERM during validation: Lightning raises its own SIGTERMException (exit status 0, no word) before any
    training batch ends; the command still says where to resume and exits with 143."""
    import signal

    out = tmp_path / "run"
    options = ["--data.root", str(demo_root), "--data.image_size", "32", "--data.batch_size", "4",
               "--model.student", "nano", "--model.input_size", "32", "--model.teacher", "null",
               "--trainer.default_root_dir", str(out), "--last_checkpoint.dirpath", str(out / "checkpoints"), *QUIET]

    def sigterm_in_the_second_validation():
        from distill.callbacks import StopOnSignal

        def send(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            if trainer.current_epoch == 1 and not trainer.sanity_checking and batch_idx == 0:
                os.kill(os.getpid(), signal.SIGTERM)
        StopOnSignal.on_validation_batch_start = send

    run = run_distill_in_a_fork(["fit", *options, "--trainer.max_epochs", "5"], tmp_path / "stderr.txt",
                                before=sigterm_in_the_second_validation)
    run.join(timeout=240)
    run.kill()
    err = (tmp_path / "stderr.txt").read_text()
    assert run.exitcode == 143, err[-2000:]
    assert "stopped by SIGTERM at epoch 1, during validation" in err
    assert str(out / "checkpoints" / "last.ckpt") in err and (out / "checkpoints" / "last.ckpt").exists()


def test_a_fill_in_two_processes_writes_what_one_writes_and_sigterm_stops_both(fresh_demo, tmp_path, monkeypatch,
                                                                               capfd):
    import signal

    from distill.cache import parallel
    from distill.stopping import StopRequested

    teacher, whole, made = fill_fixture(fresh_demo, tmp_path)
    two = made("two")
    capfd.readouterr()
    parallel.fill_in_processes(two, 2, batch_size=8)
    assert two.complete() and len(list(two.stem.parent.glob("*.logits.progress*.json"))) == 2
    drawn = capfd.readouterr().err  # one progress bar for both processes, not one each
    assert "2 processes)" in drawn and "share 1/2" not in drawn and "share 2/2" not in drawn
    assert np.allclose(np.load(two.logits_file), np.load(whole.logits_file), atol=1e-5)
    assert np.array_equal(np.load(two.views_file), np.load(whole.views_file))

    # `kill PID` of the parent in the middle: it stops both processes, each saves its share's progress
    parent, calls = os.getpid(), []

    def forward_that_gets_the_parent_killed(cache, onnx_files, threads):
        def forward(images):
            calls.append(len(images))
            if len(calls) == 2:  # in each fill process (forked: its own list)
                os.kill(parent, signal.SIGTERM)
                time.sleep(0.5)  # the parent passes it on to both processes before this batch ends
            return teacher(images)
        return forward

    monkeypatch.setattr(parallel, "teacher_forward", forward_that_gets_the_parent_killed)
    stopped = made("stopped")
    with pytest.raises(StopRequested, match="2 processes saved their progress; run the same command again"):
        parallel.fill_in_processes(stopped, 2, batch_size=8)
    assert not stopped.complete()
    monkeypatch.undo()
    parallel.fill_in_processes(stopped, 2, batch_size=8)  # the rerun goes on where each share stopped
    assert stopped.complete()
    assert np.allclose(np.load(stopped.logits_file), np.load(whole.logits_file), atol=1e-5)
    assert np.array_equal(np.load(stopped.views_file), np.load(whole.views_file))


def test_the_distill_command_prints_a_warning_as_one_plain_line(tmp_path):
    """A warning reaches a user of the command as ``warning: <message>``, not as a source path, line number and the
    line of code that raised it; DISTILL_VERBOSE=1 keeps Python's full form."""
    import subprocess

    code = ("import warnings, distill.console as c\nc.quiet_third_party()\n"
            "warnings.warn('skipped 1 unreadable image(s):\\n  a.jpg', UserWarning, stacklevel=1)\n")
    env = {k: v for k, v in os.environ.items() if k != "DISTILL_VERBOSE"}
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stderr
    assert plain == "warning: skipped 1 unreadable image(s):\n  a.jpg\n"
    full = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**env, "DISTILL_VERBOSE": "1"}).stderr
    assert "UserWarning" in full and "<string>" in full


def test_an_unknown_network_is_named_as_the_one_cause(tmp_path, capsys):
    """A mistyped network name fails with that name and the registered ones: before any stage in the pipeline, and
    in ``distill fit`` without jsonargparse's report of every Union subtype it tried."""
    from distill.stage_checks import check_stages

    root = make_demo_dataset(tmp_path / "data", per_class=4, test_images=1, seed=0, min_side=20, max_side=30)
    teacher = [{"data": {"root": str(root)}, "model": {"init_args": {"net": "efficientnet_b9"}}}]
    student = {"data": {"root": str(root)}, "model": {"init_args": {"teacher": {"name": "efficientnet_b9"}}}}
    with pytest.raises(ValueError, match="model.init_args.net: unknown model 'efficientnet_b9'; registered: "):
        check_stages(Recipe.find("demo"), teacher, student)
    with pytest.raises(SystemExit) as stop:
        distill_main(["fit", "--config", str(Recipe.shipped() / "base" / "student.yaml"), "--data.root", str(root),
                      "--model.init_args.student", "tiny_x", "--trainer.max_epochs", "1"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "unknown model 'tiny_x'" in err.splitlines()[0]
    assert "Union" not in err and "Given value" not in err


def test_a_bad_student_spec_fails_before_any_stage(tmp_path):
    """A student written out as a spec (as the trashnet recipe's is) is resolved by the up-front check, with the
    module's overrides: a bad key or value names the option there, not after the teacher's fine-tune."""
    from distill.stage_checks import check_stages

    root = make_demo_dataset(tmp_path / "data", per_class=4, test_images=1, seed=0, min_side=20, max_side=30)
    teacher = [{"data": {"root": str(root)}}]
    spec = {"input_size": 32, "stem": 8, "stages": [["ds", 16, 2]]}
    for init_args, cause in [({"student": {**spec, "rep": -1}}, "rep must be an integer >= 0"),
                             ({"student": {**spec, "stem_strid": 3}}, r"unknown keys \['stem_strid'\]"),
                             ({"student": spec, "input_size": 2}, "input_size=2 is smaller than the network's")]:
        student = {"data": {"root": str(root)}, "model": {"init_args": init_args}}
        with pytest.raises(ValueError, match=rf"model.init_args.student: student spec: {cause}"):
            check_stages(Recipe.find("demo"), teacher, student)


def test_a_bad_value_inside_the_model_names_its_key_and_value(tmp_path, capsys):
    """A wrong type under ``model.init_args`` keeps jsonargparse's nested lines (the key and the value given), not
    just the "Problem with given class_path" line above them; the other subtypes' reports stay out. Refused before
    any stage, the run leaves no output folder behind (the lock's folder is removed again)."""
    root = make_demo_dataset(tmp_path / "data", per_class=4, test_images=1, seed=0, min_side=20, max_side=30)
    with pytest.raises(SystemExit) as stop:
        distill_main(["pipeline", "--recipe", "demo", "--out", str(tmp_path / "out"), "--data-root", str(root),
                      "--set", "model.init_args.weight_decay=abc"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and 'Parser key "weight_decay"' in err and "Got value: abc" in err
    assert "Union" not in err and "Given value" not in err
    assert not (tmp_path / "out").exists()


def test_predict_says_what_it_wrote_on_its_own_line_after_the_bar(trained, tmp_path):
    """The progress bar and the closing line share a terminal: the line starts after the bar's last line has ended."""
    import subprocess

    root, config, ckpt = trained
    done = subprocess.run([sys.executable, "-m", "distill", "predict", "--config", str(config), "--ckpt_path",
                           str(ckpt), "--trainer.enable_progress_bar", "true", "--submission.out_dir", str(tmp_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stdout
    before, said, _ = done.stdout.partition("predicted 5 images")
    assert said and "Predicting" in before and before.endswith("\n"), done.stdout[-600:]


def test_report_shows_no_torch_cpp_notice(trained, tmp_path):
    """``distill report`` imports torch's benchmark timer, whose C++-extension loader logs "No CUDA runtime is found"
    on a machine with a CUDA_HOME and no GPU: the command's output holds its own lines only."""
    import subprocess

    root, _, ckpt = trained
    done = subprocess.run([sys.executable, "-m", "distill", "report", str(ckpt), "--data", str(root), "--out",
                           str(tmp_path / "card")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "CUDA_HOME": "/usr/local", "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stdout
    assert "CUDA_HOME" not in done.stdout and "cpp_extension" not in done.stdout, done.stdout
