import math

import pytest
import torch
import torch.nn.functional as F

from distill.losses import (
    DIST,
    DKD,
    KD,
    WTTM,
    CrossEntropy,
    Focal,
    class_alpha,
    dkd_terms,
    focal_loss,
    kd_loss,
    standardize,
    wttm_loss,
)


def test_kd_zero_for_identical_logits():
    logits = torch.randn(5, 7)
    assert kd_loss(logits, logits.clone(), 4.0).abs() < 1e-6


def softmax(values, T=1.0):
    e = [math.exp(v / T) for v in values]
    return [v / sum(e) for v in e]


def test_kd_matches_manual_kl_times_t2():
    s, t, T = torch.tensor([[1.0, 2.0, 0.5]]), torch.tensor([[0.2, 3.0, -1.0]]), 2.0
    p_t, p_s = softmax(t[0].tolist(), T), softmax(s[0].tolist(), T)
    manual = sum(a * math.log(a / b) for a, b in zip(p_t, p_s)) * T * T
    assert kd_loss(s, t, T).item() == pytest.approx(manual, rel=1e-5)
    assert KD(T)(s, t, torch.tensor([0]))["kd"].item() == pytest.approx(manual, rel=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(s, t, 0.0)
    with pytest.raises(ValueError, match="temperature"):
        KD(temperature=-1)


def test_standardized_kd_by_hand():
    s, t, T = [1.0, 2.0, 6.0], [0.0, 10.0, 20.0], 2.0

    def z(v):
        mean = sum(v) / len(v)
        std = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1))  # unbiased, as torch.std
        return [(x - mean) / std for x in v]

    p_t, p_s = softmax(z(t), T), softmax(z(s), T)
    manual = sum(a * math.log(a / b) for a, b in zip(p_t, p_s)) * T * T
    got = KD(T, standardize=True)(torch.tensor([s]), torch.tensor([t]), torch.tensor([0]))["kd"]
    assert got.item() == pytest.approx(manual, rel=1e-5)
    # only the logits' relations matter: scaling and shifting the teacher changes nothing
    shifted = KD(T, standardize=True)(torch.tensor([s]), 3 * torch.tensor([t]) + 7, torch.tensor([0]))["kd"]
    assert shifted.item() == pytest.approx(manual, rel=1e-5)
    assert standardize(torch.tensor([t])).std().item() == pytest.approx(1.0, rel=1e-5)


def test_dist_by_hand():
    s = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5], [1.0, -2.0, 0.0], [0.5, 0.5, 3.0]])
    t = torch.tensor([[3.0, 1.0, 0.0], [-1.0, 2.0, 1.0], [-1.0, 0.0, 2.0], [2.0, 1.0, 1.5]])

    def pearson(a, b):
        ma, mb = sum(a) / len(a), sum(b) / len(b)
        cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
        return cov / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))

    T = 2.0
    ps, pt = [softmax(r, T) for r in s.tolist()], [softmax(r, T) for r in t.tolist()]
    inter = 1 - sum(pearson(a, b) for a, b in zip(ps, pt)) / 4
    cols = lambda p, c: [row[c] for row in p]  # noqa: E731
    intra = 1 - sum(pearson(cols(ps, c), cols(pt, c)) for c in range(3)) / 3
    terms = DIST(beta=1.0, gamma=2.0, temperature=T)(s.double(), t.double(), torch.tensor([0, 1, 2, 0]))
    assert terms["inter"].item() == pytest.approx(T * T * inter, abs=1e-6)  # eps 1e-8 in the correlation
    assert terms["intra"].item() == pytest.approx(2 * T * T * intra, abs=1e-6)
    assert intra > 0.1 and inter > 0.1  # the example is not degenerate
    same = DIST()(t, t.clone(), torch.tensor([0, 1, 2, 0]))
    assert same["inter"].abs() < 1e-6 and same["intra"].abs() < 1e-6
    with pytest.raises(ValueError, match="beta"):
        DIST(beta=-1)


def test_focal_gamma0_no_alpha_equals_cross_entropy():
    logits, target = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 1, 0])
    assert focal_loss(logits, target, gamma=0.0).item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-6)
    ls = focal_loss(logits, target, gamma=0.0, label_smoothing=0.1).item()
    assert ls == pytest.approx(F.cross_entropy(logits, target, label_smoothing=0.1).item(), rel=1e-6)
    assert CrossEntropy(0.1)(logits, target)["ce"].item() == pytest.approx(ls, rel=1e-6)


def test_focal_down_weights_easy_examples_and_alpha_weights_classes():
    logits = torch.tensor([[5.0, 0.0], [0.0, 0.1]])
    target = torch.tensor([0, 1])
    per_ce = F.cross_entropy(logits, target, reduction="none")
    p = torch.exp(-per_ce)
    manual = ((1 - p) ** 2 * per_ce).mean()
    assert focal_loss(logits, target, gamma=2.0).item() == pytest.approx(manual.item(), rel=1e-6)
    focal = Focal(2.0, alpha="inverse")
    focal.set_class_counts([30, 10])  # inverse frequency, mean 1: [0.5, 1.5]
    weighted = ((1 - p) ** 2 * per_ce * torch.tensor([0.5, 1.5])[target]).mean()
    assert focal(logits, target)["focal"].item() == pytest.approx(weighted.item(), rel=1e-6)
    with pytest.raises(ValueError, match="alpha='sqrt'"):
        Focal(alpha="sqrt")


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
    ps, pt = F.softmax(s, 1)[0], F.softmax(t, 1)[0]
    bs, bt = torch.tensor([ps[0], 1 - ps[0]]), torch.tensor([pt[0], 1 - pt[0]])
    tckd = (bt * (bt / bs).log()).sum()
    qs, qt = F.softmax(s[0, 1:], 0), F.softmax(t[0, 1:], 0)
    nckd = (qt * (qt / qs).log()).sum()
    got_t, got_n = dkd_terms(s, t, y, temperature=1.0)
    assert got_t.item() == pytest.approx(tckd.item(), rel=1e-4)
    assert got_n.item() == pytest.approx(nckd.item(), rel=1e-4)
    terms = DKD(alpha=1.0, beta=8.0, temperature=1.0, warmup=0)(s, t, y)
    assert terms["tckd"].item() == pytest.approx(tckd.item(), rel=1e-4)
    assert terms["nckd"].item() == pytest.approx(8 * nckd.item(), rel=1e-4)
    assert sum(DKD()(s, s.clone(), y).values()).abs().item() < 1e-5


def test_dkd_warmup_scales_loss():
    s, t, y = torch.randn(4, 5), torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    loss = DKD(warmup=4)
    loss.on_epoch_start(0)
    first = sum(loss(s, t, y).values())
    loss.on_epoch_start(10)
    assert first.item() == pytest.approx(sum(loss(s, t, y).values()).item() / 4, rel=1e-5)


def test_wttm_by_hand():
    """U * KL(p_t^g / U || softmax(s)) per sample, U = sum p_t^g, averaged; gamma 1 is plain KL at T = 1."""
    s, t, g = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], [[0.2, 3.0, -1.0], [2.0, 2.0, -4.0]], 0.3
    manual = []
    for s_row, t_row in zip(s, t):
        power = [p ** g for p in softmax(t_row)]
        u = sum(power)
        target, p_s = [p / u for p in power], softmax(s_row)
        manual.append(u * sum(a * math.log(a / b) for a, b in zip(target, p_s)))
    s, t = torch.tensor(s), torch.tensor(t)
    assert wttm_loss(s, t, g).item() == pytest.approx(sum(manual) / 2, rel=1e-5)
    assert WTTM(g)(s, t, torch.tensor([0, 2]))["wttm"].item() == pytest.approx(sum(manual) / 2, rel=1e-5)
    assert wttm_loss(s, t, 1.0).item() == pytest.approx(kd_loss(s, t, 1.0).item(), rel=1e-5)
    assert wttm_loss(t, t.clone(), 1.0).abs() < 1e-6
    confident = torch.tensor([[30.0, 0.0, 0.0]])  # a near one-hot teacher: log space keeps the loss finite
    assert torch.isfinite(wttm_loss(torch.zeros(1, 3), confident, 0.1))
    with pytest.raises(ValueError, match="gamma"):
        WTTM(gamma=0.0)
