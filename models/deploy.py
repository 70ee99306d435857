"""A trained student in its deployed form: training-time branches folded (``reparameterize``) and, for inference
engines that want it, BN folded into the convolutions before it (``fuse_bn``). Both give plain ``nn.Conv2d`` /
``nn.BatchNorm2d`` / ``nn.Linear`` layers: what the rules and the competition's counter see."""
from __future__ import annotations

import copy
from dataclasses import replace

from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .reparam import RepConvBN, load_folded
from .students import Student


def fuse_bn(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy where every ``Conv2d`` directly followed by a ``BatchNorm2d`` inside an
    ``nn.Sequential`` is replaced by one conv with bias (the BN becomes ``nn.Identity``)."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = module._modules[a], module._modules[b]
            if type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.track_running_stats:
                module._modules[a] = fuse_conv_bn_eval(conv, bn)  # a plain nn.Conv2d with a bias
                module._modules[b] = nn.Identity()
    return model


def _conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """Every ``Conv2d`` directly followed by a ``BatchNorm2d`` inside an ``nn.Sequential``, in order."""
    pairs = []
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            children = list(module.children())
            pairs += [(a, b) for a, b in zip(children, children[1:])
                      if type(a) is nn.Conv2d and type(b) is nn.BatchNorm2d]
    return pairs


def reparameterize(model: nn.Module) -> nn.Module:
    """The deployable form of a student trained with ``rep`` > 0: the plain student of the same spec
    (``rep: 0``, the same layers and MACs as one trained without branches), every ``RepConvBN`` folded into its
    conv + BN; eval mode. Any other model is returned as it is."""
    if not isinstance(model, Student) or not model.spec.rep:
        return model
    spec = replace(copy.deepcopy(model.spec), rep=0, rep_form="bn")
    plain = Student(spec, model.classifier[-1].out_features)
    plain.preprocess = model.preprocess
    if model.spec.rep_form == "linear":  # already one conv + BN per layer, under the same names
        names = set(plain.state_dict())
        state = {k: v for k, v in model.state_dict().items() if k in names}
        state.update({f"{name}.weight": module.weight.detach() for name, module in model.named_modules()
                      if parametrize.is_parametrized(module, "weight")})  # each conv's merged kernel
        plain.load_state_dict(state)
        return plain.eval()
    blocks = [m for m in model.modules() if isinstance(m, RepConvBN)]
    pairs = _conv_bn_pairs(plain.features)
    if len(blocks) != len(pairs):
        raise RuntimeError(f"reparameterize: {len(blocks)} branched blocks for {len(pairs)} plain conv + BN pairs")
    plain.eval()
    for block, (conv, bn) in zip(blocks, pairs):
        load_folded(block, conv, bn)  # fold() reads the running statistics: no mode change of the source
    plain.classifier.load_state_dict(model.classifier.state_dict())
    return plain
