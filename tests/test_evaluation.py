"""The held-out verdict: the paired bootstrap over images, checked against its definition computed by hand."""
import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_f1_score

from distill.evaluation import macro_f1, paired_bootstrap


def by_hand(labels, runs_a, runs_b, classes, resamples, seed=0):
    """The definition, one resample at a time: the same images for both recipes and every seed."""
    def mean_f1(runs, idx):
        return np.mean([float(multiclass_f1_score(torch.as_tensor(p[idx]), torch.as_tensor(labels[idx]), classes,
                                                  average="macro")) for p in runs])

    rng = np.random.default_rng(seed)
    return np.array([mean_f1(runs_a, idx) - mean_f1(runs_b, idx)
                     for idx in rng.integers(0, len(labels), size=(resamples, len(labels)))])


def test_paired_bootstrap_is_its_definition():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, 60)
    labels[labels == 4] = 3  # a class that no image has: macro F1 leaves it out, in every resample
    noisy = [np.where(rng.random(60) < accuracy, labels, rng.integers(0, 5, 60)) for accuracy in (0.8, 0.7, 0.5, 0.6)]
    runs_a, runs_b = noisy[:2], noisy[2:]
    result = paired_bootstrap(labels, runs_a, runs_b, 5, resamples=300)
    draws = by_hand(labels, runs_a, runs_b, 5, 300)
    assert result.low == pytest.approx(np.quantile(draws, 0.025), abs=1e-6)
    assert result.high == pytest.approx(np.quantile(draws, 0.975), abs=1e-6)
    whole = np.mean([macro_f1(labels, p, 5) for p in runs_a]) - np.mean([macro_f1(labels, p, 5) for p in runs_b])
    assert result.difference == pytest.approx(whole, abs=1e-6) and result.low < result.difference < result.high
    assert result.per_seed == pytest.approx([macro_f1(labels, a, 5) - macro_f1(labels, b, 5)
                                             for a, b in zip(runs_a, runs_b)])
    with pytest.raises(ValueError, match="not the same images"):
        paired_bootstrap(labels, [labels[:10]], runs_b, 5)
