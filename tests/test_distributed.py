"""The teacher-output cache under DDP on CPU (gloo): the fill is split across the ranks into one set of
files, every rank replays those views and trains, and the cache is the one a single process makes.

The ranks are forked (``ddp_fork``, Lightning's launcher for an interactive session): the same ranks, world size
and set-up hooks as ``--trainer.strategy ddp``, without two new interpreters each importing torch and Lightning.
They are forked from a fresh ``distill fit`` process, not from the test worker: a process that has run a backward
pass (an earlier test in the same worker) cannot fork autograd."""
import json
import subprocess
import sys

import numpy as np
import torch


def options(demo_root, teacher, cache):
    return ["--data.root", str(demo_root), "--data.image_size", "40", "--data.batch_size", "8",
            "--model.student", "nano", "--model.input_size", "32", "--model.teacher.name", "resnet18",
            "--model.teacher.weights", str(teacher), "--model.teacher.input_size", "32",
            "--teacher_cache.views", "3", "--teacher_cache.mix", "both", "--teacher_cache.cache_dir", str(cache),
            "--teacher_cache.backend", "torch", "--trainer.enable_progress_bar", "false",
            "--trainer.accelerator", "cpu", "--seed_everything", "0"]


def test_ddp_fill_is_split_and_matches_one_process(demo_root, tmp_path):
    from distill.models import create_model

    from distill.cache_stage import main as distill_cache

    teacher = tmp_path / "teacher.pt"
    torch.save(create_model("resnet18", 9).state_dict(), teacher)
    out = tmp_path / "ddp"
    fit = [sys.executable, "-m", "distill", "fit", *options(demo_root, teacher, tmp_path / "cache_ddp"),
           "--trainer.strategy", "ddp_fork", "--trainer.devices", "2", "--trainer.max_epochs", "1",
           "--trainer.default_root_dir", str(out)]
    result = subprocess.run(fit, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    best = torch.load(next(out.glob("lightning_logs/version_0/checkpoints/best.ckpt")), weights_only=True)
    assert best["epoch"] == 0 and best["global_step"] > 0  # the ranks trained from the cache
    # the reference: the same cache filled by one process (``distill cache``)
    distill_cache([*options(demo_root, teacher, tmp_path / "cache_one"), "--trainer.logger", "false",
                   "--teacher_cache.processes", "1"])
    ddp_logits = sorted((tmp_path / "cache_ddp").glob("*.logits.npy"))
    one_logits = sorted((tmp_path / "cache_one").glob("*.logits.npy"))
    assert len(ddp_logits) == len(one_logits) == 1 and ddp_logits[0].name == one_logits[0].name  # the same key
    shares = [json.loads(p.read_text())["share"] for p in (tmp_path / "cache_ddp").glob("*.logits.progress*.json")]
    assert len(shares) == 2 and sorted(shares)[0][1] == sorted(shares)[1][0]  # two ranks, adjacent halves
    # the same recorded views and teacher outputs as one process made
    assert np.allclose(np.load(ddp_logits[0]), np.load(one_logits[0]), atol=1e-5)
    views = sorted((tmp_path / "cache_ddp").glob("*px*.npy"))
    assert np.array_equal(np.load(views[0]), np.load(sorted((tmp_path / "cache_one").glob("*px*.npy"))[0]))
