import pytest
import torch
import torch.nn.functional as F
from distill.models import create_model
from torch import nn

from distill.competition import check_rules, competition_macs, competition_score
from distill.complexity import count_macs


def hand_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5, bias=False))


def test_macs_of_hand_computable_network():
    # conv: 6*6 outputs x 4 channels x 3*3*3 = 3888; linear: 144*5 = 720
    report = count_macs(hand_net(), 8)
    assert report.total == 3888 + 720
    assert report.by_operator == {"conv": 3888, "linear": 720}
    assert report.unsupported == {}
    assert competition_macs(hand_net(), 8) == 3888 + 720  # ReLU ignored by the competition counter


def test_competition_counter_ignores_relu_but_counts_bn():
    net = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU6())
    assert competition_macs(net, 4) == 3 * 4 * 16 + 2 * 4 * 16  # ptflops: BN = 2 per element (affine)


@pytest.mark.parametrize("f1,macs,expected", [
    (0.40, 1_000_000, 1_000_000 / 13_878_369 + 1.0),                       # F1 < 0.5 cliff
    (0.4999, 0, 1.0),                                                      # just under the cliff
    (0.50, 0, 1 - 0.5 / 0.8367),                                           # cliff edge itself
    (0.70, 13_878_369, 1.0 + 1 - 0.70 / 0.8367),                           # below baseline F1
    (0.8367, 500_000, 500_000 / 13_878_369 + 0.0),                         # exactly baseline F1
    (0.95, 100_000, 100_000 / 13_878_369 + 0.5 * (1 - 0.95 / 0.8367)),     # above: negative part
    (1.0, 0, 0.5 * (1 - 1 / 0.8367)),                                      # best possible: negative score
])
def test_competition_score_branches(f1, macs, expected):
    assert competition_score(f1, macs) == pytest.approx(expected, abs=1e-12)


def test_score_constants_configurable_and_negative():
    assert competition_score(0.9, 1000, f1_base=0.8, macs_base=1000) == pytest.approx(1 + 0.5 * (1 - 0.9 / 0.8))
    assert competition_score(0.99, 10_000) < 0
    with pytest.raises(ValueError):
        competition_score(1.2, 10)


class OverriddenConv(nn.Conv2d):
    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)


class FunctionalHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.w = nn.Parameter(torch.randn(5, 8))

    def forward(self, x):
        return F.linear(self.conv(x).mean((2, 3)), self.w)


def test_compliant_student_passes():
    assert check_rules(create_model("tiny", 9), 64) == []


def test_overridden_forward_is_caught():
    model = nn.Sequential(OverriddenConv(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    problems = check_rules(model, 16)
    assert any("OverriddenConv subclasses nn.Conv2d and overrides forward" in p for p in problems)


def test_functional_arithmetic_is_caught():
    problems = check_rules(FunctionalHead(), 16)
    assert len(problems) == 1
    assert "40 conv/linear MACs are computed outside standard" in problems[0]  # 8*5 linear MACs


def test_foreign_library_module_is_caught_torchvision_is_not():
    import torchvision

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x)

    Block.__module__ = "timm.layers.fancy"
    model = nn.Sequential(Block(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    problems = check_rules(model, 16)
    assert len(problems) == 1 and "from the model library 'timm'" in problems[0]
    assert check_rules(torchvision.models.mobilenet_v3_small(num_classes=3), 32) == []


def test_forward_failure_is_reported():
    problems = check_rules(hand_net(), 16)  # its Linear expects the 8 px feature map
    assert any("forward pass fails at input 16x16" in p for p in problems)


def test_complexity_of_a_trained_model_file(tmp_path, capsys):
    """``distill complexity model.pt`` (or ``--model model.pt``) counts the file's model as deployed, with its own
    classes and input size."""
    from distill.models import create_model
    from distill.models.students import student_spec

    from distill.checkpoint import save_trained
    from distill.command_args import PARSERS
    from distill.competition import run

    trained = create_model("tiny_orepa", 6)
    path = save_trained(tmp_path / "model.pt", trained, student_spec("tiny_orepa").to_dict(), 6)
    for argv in ([str(path)], ["--model", str(path)]):
        run(PARSERS["complexity"]().parse_args(argv))
        row = capsys.readouterr().out.splitlines()[1].split()
        assert row[0] == str(path) and row[1] == "64" and row[3:] == ["911,360", "911,366", "ok"]
    with pytest.raises(FileNotFoundError, match="model file not found: .*missing.pt"):  # a mistyped path, not a name
        run(PARSERS["complexity"]().parse_args(["--model", str(tmp_path / "missing.pt")]))
