"""The held-out verdict: the hierarchical bootstrap over seeds and images, checked against its definition computed by
hand, and the comparison of runs from their per-image prediction files."""
import json

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_f1_score

from distill.evaluation import ScoredImages, compare_scored, macro_f1, paired_bootstrap


def by_hand(labels, runs_a, runs_b, classes, resamples, seed=0, resample_seeds=True):
    """The definition, one resample at a time: each arm's seeds drawn with replacement, then the same images for
    both recipes and every seed drawn (the generator's draws in the order the docstring gives)."""
    def f1(p, idx):
        return float(multiclass_f1_score(torch.as_tensor(p[idx]), torch.as_tensor(labels[idx]), classes,
                                         average="macro"))

    rng = np.random.default_rng(seed)
    images = rng.integers(0, len(labels), size=(resamples, len(labels)))
    seeds_a = rng.integers(0, len(runs_a), size=(resamples, len(runs_a))) if resample_seeds else None
    seeds_b = rng.integers(0, len(runs_b), size=(resamples, len(runs_b))) if resample_seeds else None
    draws = []
    for r, idx in enumerate(images):
        picked_a = [runs_a[i] for i in seeds_a[r]] if resample_seeds else runs_a
        picked_b = [runs_b[i] for i in seeds_b[r]] if resample_seeds else runs_b
        draws.append(np.mean([f1(p, idx) for p in picked_a]) - np.mean([f1(p, idx) for p in picked_b]))
    return np.array(draws)


def noisy_runs(rng, labels, accuracies, classes=5):
    return [np.where(rng.random(len(labels)) < a, labels, rng.integers(0, classes, len(labels))) for a in accuracies]


@pytest.mark.parametrize("resample_seeds", [True, False])
def test_paired_bootstrap_is_its_definition(resample_seeds):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, 60)
    labels[labels == 4] = 3  # a class that no image has: macro F1 leaves it out, in every resample
    noisy = noisy_runs(rng, labels, (0.8, 0.7, 0.5, 0.6, 0.55))
    runs_a, runs_b = noisy[:2], noisy[2:]  # 2 seeds against 3: the arms' seeds are drawn independently
    result = paired_bootstrap(labels, runs_a, runs_b, 5, resamples=300, resample_seeds=resample_seeds)
    draws = by_hand(labels, runs_a, runs_b, 5, 300, resample_seeds=resample_seeds)
    assert result.low == pytest.approx(np.quantile(draws, 0.025), abs=1e-6)
    assert result.high == pytest.approx(np.quantile(draws, 0.975), abs=1e-6)
    assert result.resampled == ("seeds and images" if resample_seeds else "images")
    whole = np.mean([macro_f1(labels, p, 5) for p in runs_a]) - np.mean([macro_f1(labels, p, 5) for p in runs_b])
    assert result.difference == pytest.approx(whole, abs=1e-6)
    assert result.per_seed == pytest.approx([macro_f1(labels, a, 5) - macro_f1(labels, b, 5)
                                             for a, b in zip(runs_a, runs_b)])
    with pytest.raises(ValueError, match="not the same images"):
        paired_bootstrap(labels, [labels[:10]], runs_b, 5)


def test_seeds_that_disagree_widen_the_interval():
    """One arm's seeds land far apart (one nearly right, one nearly random): an interval that holds the seeds fixed
    sees only the images and is too narrow; resampling the seeds too widens it by about the seeds' spread. Seeds
    that agree (every seed the same run) leave it as it was."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 400)
    good, bad, b1, b2 = noisy_runs(rng, labels, (0.95, 0.45, 0.7, 0.7))
    images_only = paired_bootstrap(labels, [good, bad], [b1, b2], 5, resample_seeds=False)
    both = paired_bootstrap(labels, [good, bad], [b1, b2], 5)
    assert both.difference == images_only.difference
    assert both.high - both.low > 2 * (images_only.high - images_only.low)
    per_seed_a = [macro_f1(labels, p, 5) for p in (good, bad)]
    assert both.low < both.difference < both.high and both.high - both.low > 0.5 * abs(per_seed_a[0] - per_seed_a[1])
    same = paired_bootstrap(labels, [good, good], [b1, b1], 5)  # seeds that agree exactly: nothing to add
    alone = paired_bootstrap(labels, [good], [b1], 5, resample_seeds=False)
    assert (same.low, same.high) == pytest.approx((alone.low, alone.high), abs=1e-9)


def write_predictions(path, paths, labels, preds):
    path.write_text(json.dumps({"f1": 0.0, "class_names": ["a", "b", "c"], "paths": paths, "labels": labels,
                                "preds": preds}))
    return path


def test_runs_are_compared_on_their_joined_prediction_files(tmp_path):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 40)
    preds = [np.where(rng.random(40) < accuracy, labels, rng.integers(0, 3, 40)) for accuracy in (0.9, 0.6)]
    names = [f"val/x/{i}.jpg" for i in range(20)] + [f"train/x/{i}.jpg" for i in range(20)]
    runs = []
    for k, p in enumerate(preds):  # each run: a val file and a held-out file, joined in that order
        val = write_predictions(tmp_path / f"val{k}.json", names[:20], labels[:20].tolist(), p[:20].tolist())
        held = write_predictions(tmp_path / f"held{k}.json", names[20:], labels[20:].tolist(), p[20:].tolist())
        runs.append(ScoredImages.read(val, held))
    assert runs[0].paths == names and runs[0].f1 == pytest.approx(macro_f1(labels, preds[0], 3))
    result = compare_scored(runs[:1], runs[1:], name_a="kd", name_b="ce")
    assert result["images"] == 40 and result["kd_f1_per_seed"] == [runs[0].f1]
    assert result["difference"] == pytest.approx(macro_f1(labels, preds[0], 3) - macro_f1(labels, preds[1], 3))
    other = write_predictions(tmp_path / "other.json", names[::-1], labels.tolist(), preds[1].tolist())
    with pytest.raises(ValueError, match="different held-out images"):
        compare_scored(runs[:1], [ScoredImages.read(other)], "held-out images")
    damaged = tmp_path / "damaged.json"
    damaged.write_text(json.dumps({"f1": 0.5}))
    with pytest.raises(ValueError, match="damaged.json is not a predictions file"):
        ScoredImages.read(damaged)


def test_offclass_entropy_says_how_much_a_teacher_tells_of_the_other_classes():
    """1.0 when the classes a teacher did not pick are equally likely to it (a label-smoothed teacher's mark),
    less when it ranks them; the same number from the formula, whichever class it picked and however the
    logits are laid out."""
    from distill.evaluation import offclass_entropy

    uniform = np.array([[5.0, 1.0, 1.0, 1.0], [1.0, 1.0, 7.0, 1.0]])
    assert offclass_entropy(uniform) == pytest.approx(1.0)
    ranked = np.array([[5.0, 3.0, 0.0, -3.0]])
    probs = np.exp(ranked[0]) / np.exp(ranked[0]).sum()
    others = probs[1:] / probs[1:].sum()
    assert offclass_entropy(ranked) == pytest.approx(-(others * np.log(others)).sum() / np.log(3), rel=1e-5)
    assert offclass_entropy(ranked) < 0.6
    views = np.stack([uniform, np.concatenate([ranked, ranked])])  # images x views x classes: the mean of all
    assert offclass_entropy(views) == pytest.approx((2 + 2 * offclass_entropy(ranked)) / 4, rel=1e-5)
    with pytest.raises(ValueError, match="at least 3 classes"):
        offclass_entropy(np.zeros((4, 2)))
