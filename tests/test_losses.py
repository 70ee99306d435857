import math

import pytest
import torch
import torch.nn.functional as F

from distill.losses import DistillationLoss, DKDLoss, FocalLoss, KDLoss, class_alpha, dkd_loss, focal_loss, kd_loss


def test_kd_zero_for_identical_logits():
    logits = torch.randn(5, 7)
    assert kd_loss(logits, logits.clone(), 4.0).abs() < 1e-6


def test_kd_matches_manual_kl_times_t2():
    s, t, T = torch.tensor([[1.0, 2.0, 0.5]]), torch.tensor([[0.2, 3.0, -1.0]]), 2.0
    p_t = [math.exp(v / T) for v in t[0].tolist()]
    p_t = [v / sum(p_t) for v in p_t]
    p_s = [math.exp(v / T) for v in s[0].tolist()]
    p_s = [v / sum(p_s) for v in p_s]
    manual = sum(a * math.log(a / b) for a, b in zip(p_t, p_s)) * T * T
    assert kd_loss(s, t, T).item() == pytest.approx(manual, rel=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(s, t, 0.0)


def test_focal_gamma0_no_alpha_equals_cross_entropy():
    logits, target = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 1, 0])
    assert focal_loss(logits, target, gamma=0.0).item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-6)
    ls = focal_loss(logits, target, gamma=0.0, label_smoothing=0.1).item()
    assert ls == pytest.approx(F.cross_entropy(logits, target, label_smoothing=0.1).item(), rel=1e-6)


def test_focal_down_weights_easy_examples_and_alpha_weights_classes():
    logits = torch.tensor([[5.0, 0.0], [0.0, 0.1]])
    target = torch.tensor([0, 1])
    per_ce = F.cross_entropy(logits, target, reduction="none")
    p = torch.exp(-per_ce)
    manual = ((1 - p) ** 2 * per_ce).mean()
    assert focal_loss(logits, target, gamma=2.0).item() == pytest.approx(manual.item(), rel=1e-6)
    alpha = torch.tensor([1.0, 3.0])
    weighted = ((1 - p) ** 2 * per_ce * alpha[target]).mean()
    assert FocalLoss(2.0, alpha)(logits, target).item() == pytest.approx(weighted.item(), rel=1e-6)


def test_class_alpha_rules():
    inv = class_alpha([100, 10], "inverse")
    assert inv.mean().item() == pytest.approx(1.0) and inv[1] / inv[0] == pytest.approx(10.0)
    eff = class_alpha([100, 10], "effective", beta=0.9)
    assert eff[1] > eff[0] and eff[1] / eff[0] < 10  # effective number saturates
    assert class_alpha([1, 2], "none") is None
    with pytest.raises(ValueError, match="alpha rule"):
        class_alpha([1, 2], "sqrt")


def test_dkd_parts_by_hand():
    s = torch.tensor([[2.0, 1.0, 0.0]])
    t = torch.tensor([[1.0, 3.0, 0.5]])
    y = torch.tensor([0])
    T = 1.0
    ps, pt = F.softmax(s, 1)[0], F.softmax(t, 1)[0]
    bs, bt = torch.tensor([ps[0], 1 - ps[0]]), torch.tensor([pt[0], 1 - pt[0]])
    tckd = (bt * (bt / bs).log()).sum()
    qs, qt = F.softmax(s[0, 1:], 0), F.softmax(t[0, 1:], 0)
    nckd = (qt * (qt / qs).log()).sum()
    total, got_t, got_n = dkd_loss(s, t, y, alpha=1.0, beta=8.0, temperature=T, return_parts=True)
    assert got_t.item() == pytest.approx(tckd.item(), rel=1e-4)
    assert got_n.item() == pytest.approx(nckd.item(), rel=1e-4)
    assert total.item() == pytest.approx((tckd + 8 * nckd).item(), rel=1e-4)
    assert dkd_loss(s, s.clone(), y).abs().item() < 1e-5


def test_dkd_warmup_scales_loss():
    s, t, y = torch.randn(4, 5), torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    loss = DKDLoss(warmup=4)
    loss.set_epoch(0)
    first = loss(s, t, y)
    loss.set_epoch(10)
    assert first.item() == pytest.approx(loss(s, t, y).item() / 4, rel=1e-5)


def test_distillation_loss_mixes_terms():
    s, t, y = torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0, 1, 2])
    mix = DistillationLoss(KDLoss(2.0), FocalLoss(0.0), alpha_kd=0.25)
    out = mix(s, y, t)
    expected = 0.25 * kd_loss(s, t, 2.0) + 0.75 * F.cross_entropy(s, y)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(mix(s, y)) == {"loss", "hard"}  # no teacher: plain classifier loss
    with pytest.raises(ValueError, match="alpha_kd"):
        DistillationLoss(KDLoss(), FocalLoss(), alpha_kd=1.5)
