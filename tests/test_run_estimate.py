"""The run's estimate: the work counted from the data and the configs, priced by a probe; the progress lines."""
import torch
from jsonargparse import Namespace

from distill.layout import read_layout
from distill.run_estimate import RunProgress, StageEstimate, batches, fit_estimate, labelled_images, seconds_per_step


def test_the_work_of_a_stage_is_counted_from_the_data_and_its_config(demo_root):
    _, train, val = read_layout(demo_root)
    given = Namespace(holdout_fraction=0.2, val_mode="given", val_fraction=0.1)
    merged = Namespace(holdout_fraction=0.2, val_mode="merge", val_fraction=0.1)
    assert labelled_images(demo_root, given) == int(len(train) * 0.8)
    assert labelled_images(demo_root, merged) == int(len(train + val) * 0.8 * 0.9)
    config = Namespace(data=Namespace(batch_size=16), trainer=Namespace(max_epochs=3, limit_train_batches=None))
    assert batches(100, config) == 7
    config.trainer.limit_train_batches = 2  # as Lightning counts it: a number of batches, or a fraction
    assert batches(100, config) == 2
    config.trainer.limit_train_batches = 0.5
    assert batches(100, config) == 3
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 2))
    assert seconds_per_step(net, 16, 8) > 0 and net.training and net[0].weight.grad is not None
    assert seconds_per_step(net, 16, 8, train=False) > 0 and not net.training


def test_a_fit_costs_epochs_times_batches_times_its_probed_step(monkeypatch):
    import distill.run_estimate as run_estimate

    monkeypatch.setattr(run_estimate, "seconds_per_step", lambda net, size, batch: 0.5 if batch == 16 else 99.0)
    config = Namespace(data=Namespace(batch_size=16), trainer=Namespace(max_epochs=3, limit_train_batches=None))
    estimate = fit_estimate("student", config, 100, torch.nn.Identity(), 32)
    assert estimate == StageEstimate("student", 3 * 7 * 0.5, "3 epoch(s) x 7 batch(es) of 16 at 32 px")


def test_progress_says_the_plan_and_how_far_the_run_is(capsys):
    progress = RunProgress([StageEstimate("teacher", 0.0, "finished"), StageEstimate("student_kd/seed_0", 120, ""),
                            StageEstimate("student_kd/seed_1", 120, "")])
    said = capsys.readouterr().out
    assert "2 stage(s) to run (1 finished), about 4.0 min" in said and "student_kd/seed_1 2.0 min" in said
    assert progress.finished("teacher_cache", 7) == 7  # a stage not in the plan: nothing said
    assert capsys.readouterr().out == ""
    progress.finished("student_kd/seed_0")
    said = capsys.readouterr().out
    assert said.startswith("[progress] student_kd/seed_0 done: 1 of 3 stage(s)") and "left" in said
    progress.finished("student_kd/seed_0")  # said once
    assert capsys.readouterr().out == ""


def test_an_interrupted_stage_costs_only_its_epochs_left(tmp_path, monkeypatch):
    import distill.run_estimate as run_estimate
    from distill.run_estimate import epochs_done

    (tmp_path / "stage" / "checkpoints").mkdir(parents=True)
    assert epochs_done(tmp_path / "stage") == 0
    torch.save({"epoch": 4, "state_dict": {}}, tmp_path / "stage" / "checkpoints" / "last.ckpt")  # epochs 0-4 done
    assert epochs_done(tmp_path / "stage") == 5
    monkeypatch.setattr(run_estimate, "seconds_per_step", lambda net, size, batch: 1.0)
    config = Namespace(data=Namespace(batch_size=10), trainer=Namespace(max_epochs=8, limit_train_batches=None))
    assert fit_estimate("teacher", config, 20, torch.nn.Identity(), 32, done=5).seconds == 3 * 2 * 1.0
    (tmp_path / "stage" / "checkpoints" / "last.ckpt").write_bytes(b"damaged")
    assert epochs_done(tmp_path / "stage") == 0
