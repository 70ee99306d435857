"""The teacher-output cache under DDP on CPU (gloo): the fill is split across the ranks into one set of
files, every rank replays those views, and the result matches a single process."""
import json
import subprocess
import sys

import numpy as np
import torch

from distill.checkpoint import selected_val_f1


def fit(demo_root, out, cache, teacher, *extra):
    command = [sys.executable, "-m", "distill", "fit", "--data.root", str(demo_root), "--data.image_size", "40",
               "--data.batch_size", "8", "--model.student", "nano", "--model.input_size", "32",
               "--model.teacher.name", "resnet18", "--model.teacher.weights", str(teacher),
               "--model.teacher.input_size", "32", "--trainer.max_epochs", "2",
               "--teacher_cache.views", "3", "--teacher_cache.mix", "both", "--teacher_cache.cache_dir", str(cache),
               "--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar", "false",
               "--trainer.accelerator", "cpu", "--seed_everything", "0", *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    best = next(out.glob("lightning_logs/version_0/checkpoints/best.ckpt"))
    return selected_val_f1(torch.load(best, map_location="cpu", weights_only=True))


def test_ddp_fill_is_split_and_matches_one_process(demo_root, tmp_path):
    from distill.models import create_model

    teacher = tmp_path / "teacher.pt"
    torch.save(create_model("resnet18", 9).state_dict(), teacher)
    f1_ddp = fit(demo_root, tmp_path / "ddp", tmp_path / "cache_ddp", teacher, "--trainer.strategy", "ddp",
                 "--trainer.devices", "2")
    f1_one = fit(demo_root, tmp_path / "one", tmp_path / "cache_one", teacher, "--trainer.devices", "1")
    ddp_logits = sorted((tmp_path / "cache_ddp").glob("*.logits.npy"))
    one_logits = sorted((tmp_path / "cache_one").glob("*.logits.npy"))
    assert len(ddp_logits) == len(one_logits) == 1 and ddp_logits[0].name == one_logits[0].name  # the same key
    shares = [json.loads(p.read_text())["share"] for p in (tmp_path / "cache_ddp").glob("*.logits.progress*.json")]
    assert len(shares) == 2 and sorted(shares)[0][1] == sorted(shares)[1][0]  # two ranks, adjacent halves
    # the same recorded views and teacher outputs as one process made
    assert np.allclose(np.load(ddp_logits[0]), np.load(one_logits[0]), atol=1e-5)
    views = sorted((tmp_path / "cache_ddp").glob("*px.npy"))
    assert np.array_equal(np.load(views[0]), np.load(sorted((tmp_path / "cache_one").glob("*px.npy"))[0]))
    # two ranks see each batch split in two (batch 2 x 8): the same data, not the same steps; F1 stays close
    assert abs(f1_ddp - f1_one) <= 0.25, (f1_ddp, f1_one)
