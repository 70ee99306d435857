"""Students the competition allows: torchvision backbones (rules, weights, training, export) and pruning
to a MAC budget."""
import pytest
import torch
import torch.nn.functional as F
import torchvision
from distill.models import create_model, layer_shapes
from torch import nn

from distill.checkpoint import load_trained, save_trained
from distill.competition import check_rules, competition_macs
from distill.complexity import count_macs
from distill.export import export_student
from distill.module import DistillModule
from distill.prune import prune_file, prune_to_macs


@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5", "mobilenet_v3_small", "mnasnet0_5"])
def test_torchvision_models_obey_the_rules(name):
    model = torchvision.models.get_model(name, num_classes=9)
    assert check_rules(model, 64) == []


class TimmStyleConv2dSame(nn.Conv2d):
    """What timm's Conv2dSame does: a subclass of nn.Conv2d whose forward pads and calls F.conv2d."""

    def forward(self, x):
        return F.conv2d(F.pad(x, [1, 1, 1, 1]), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


TimmStyleConv2dSame.__module__ = "timm.layers.conv2d_same"


def test_timm_style_layer_functional_calls_and_overrides_are_caught():
    model = torchvision.models.mobilenet_v3_small(num_classes=3)
    model.features[0][0] = TimmStyleConv2dSame(3, 16, 3, 2, bias=False)
    problems = check_rules(model, 64)
    assert any("from the model library 'timm'" in p for p in problems)
    assert any("subclasses nn.Conv2d and overrides forward" in p for p in problems)


def test_backbone_student_weights_training_and_folding(tmp_path):
    imagenet = torchvision.models.mobilenet_v3_small()  # stands in for ImageNet weights saved offline
    torch.save(imagenet.state_dict(), tmp_path / "mobilenet_v3_small_imagenet.pth")
    definition = {"backbone": "mobilenet_v3_small", "blocks": 4, "input_size": 64}
    student = create_model(definition, 6, weights=str(tmp_path / "mobilenet_v3_small_imagenet.pth"))
    assert torch.equal(student.features[1].block[0][0].weight, imagenet.features[1].block[0][0].weight)
    assert student.classifier[-1].out_features == 6 and student.preprocess.input_size == 64
    assert check_rules(student, 64) == []
    macs = count_macs(student, 64).total
    assert 0 < macs < 5_757_952 and competition_macs(student, 64) > 0  # a part of the whole network
    module = DistillModule(6, student=definition, weights=str(tmp_path / "mobilenet_v3_small_imagenet.pth"))
    before = module.student.classifier[-1].weight.clone()
    optimizer = torch.optim.SGD(module.student.parameters(), lr=0.1)
    images, labels = torch.randint(0, 255, (4, 3, 64, 64), dtype=torch.uint8), torch.tensor([0, 1, 2, 3])
    module.combine(module(images), labels, None)["loss"].backward()
    optimizer.step()
    assert not torch.equal(before, module.student.classifier[-1].weight)  # trained one step
    save_trained(tmp_path / "student.pt", module.student.eval(), module.model_def, 6)
    again, _ = load_trained(tmp_path / "student.pt")
    x = torch.randn(3, 3, 64, 64)
    assert torch.allclose(again(x), module.student(x), atol=1e-6)  # (the module keeps channels-last weights)
    report = export_student(again, tmp_path / "export", x, onnx=False)  # the ONNX file: tests/test_export.py
    assert report.fused_max_abs_diff < 1e-4 and report.rule_violations_after == []
    with pytest.raises(ValueError, match="blocks=99"):
        create_model({"backbone": "mobilenet_v3_small", "blocks": 99}, 6)


def trained_like(name="small"):
    torch.manual_seed(0)
    model = create_model(name, 6)
    model.train()
    size = model.preprocess.input_size
    for _ in range(2):
        model(torch.randn(8, 3, size, size))  # non-trivial BN statistics
    return model.eval()


def test_pruning_hits_the_budget_obeys_the_rules_and_folds(tmp_path):
    model = trained_like("small")
    size = model.preprocess.input_size
    result = prune_to_macs(model, 920_000, size)
    assert 0.98 * 920_000 <= result.macs_after <= 920_000 and result.macs_before > 2 * 920_000
    assert count_macs(result.model, size).total == result.macs_after
    assert check_rules(result.model, size) == []
    assert all(type(m) in (nn.Conv2d, nn.BatchNorm2d, nn.Linear) for m in result.model.modules()
               if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)))
    x = torch.randn(4, 3, size, size)
    report = export_student(result.model, tmp_path / "export", x, onnx=False)  # the ONNX file: tests/test_export.py
    assert report.fused_max_abs_diff < 1e-4 and report.rule_violations_after == []


def test_pruned_model_file_rebuilds_and_fine_tunes(tmp_path):
    model = trained_like("small")
    save_trained(tmp_path / "large.pt", model, {"input_size": 80, **create_model("small", 6).spec.to_dict()}, 6)
    result = prune_file(tmp_path / "large.pt", 920_000, tmp_path / "pruned.pt")
    pruned, meta = load_trained(tmp_path / "pruned.pt")
    assert meta["model"]["shapes"] == layer_shapes(result.model)
    x = torch.randn(2, 3, 80, 80)
    assert torch.equal(pruned(x), result.model(x))  # the file rebuilds the pruned structure exactly
    module = DistillModule(6, student=meta["model"], weights=str(tmp_path / "pruned.pt"))
    assert torch.allclose(module.student.eval()(x), result.model(x), atol=1e-6)  # fine-tuning starts from them
    with pytest.raises(ValueError, match="not below"):
        prune_to_macs(model, 10**9, 80)
