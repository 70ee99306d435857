"""Training-time capacity that folds away: over-parameterised conv + BN blocks (RepVGG, Ding et al. 2021;
MobileOne, Vasu et al. 2023; ExpandNets, Guo et al. 2020) that become one plain ``nn.Conv2d`` + ``nn.BatchNorm2d``
for deployment. Two training forms (``StudentSpec.rep_form``):

- ``bn`` (``RepConvBN``): every branch is its own conv + BN, run separately at each step;
- ``linear`` (``MergedBranches``, online re-parameterisation as OREPA, Hu et al. 2022): the branches are kernels
  with a learned per-channel scale and no BN of their own, summed into one kernel *before* the convolution, so a
  training step runs one conv + BN per layer, as the deployed student does. The conv stays a plain ``nn.Conv2d``
  whose ``weight`` is a ``torch.nn.utils.parametrize`` parametrization of the branch kernels.

While training, ``RepConvBN`` sums ``branches`` parallel ``k x k`` conv + BN branches, a ``1 x 1`` conv + BN
branch (when ``k > 1``) and a BN-only identity branch (when the shapes allow). Every branch is linear in the
input, so their sum is one ``k x k`` convolution with a bias: ``fold`` computes it exactly, and
``reparameterize`` writes it into the plain student of the same spec (``rep: 0``), whose layers and MACs are
those of a student that never had branches. The bias goes into the BN (running mean 0, running variance 1,
weight ``sqrt(1 + eps)``), so the deployed state dict has the plain student's keys and shapes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_weights


def _with_bn(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The (weight, bias) of ``bn(conv(x))`` in eval mode for a bias-free conv of ``weight`` (torch's own fusion)."""
    fused_weight, fused_bias = fuse_conv_bn_weights(weight, None, bn.running_mean, bn.running_var, bn.eps, bn.weight,
                                                    bn.bias)
    return fused_weight.detach(), fused_bias.detach()


class RepConvBN(nn.Module):
    """``sum_i bn_i(conv_i(x))`` over ``branches`` k x k convs, a 1 x 1 conv and an identity BN (training form)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, groups: int, branches: int):
        super().__init__()
        self.cin, self.cout, self.kernel, self.stride, self.groups = cin, cout, kernel, stride, groups

        def conv_bn(k: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout))

        self.convs = nn.ModuleList([conv_bn(kernel) for _ in range(branches)])
        self.scale = conv_bn(1) if kernel > 1 else None
        self.identity = nn.BatchNorm2d(cout) if cin == cout and stride == 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()  # channels-last inputs hit a stalling CPU backward kernel (see channels_last)
        out = sum(branch(x) for branch in self.convs)
        if self.scale is not None:
            out = out + self.scale(x)
        if self.identity is not None:
            out = out + self.identity(x)
        return out

    @torch.no_grad()
    def fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (weight ``cout x cin/groups x k x k``, bias ``cout``) of the whole block in eval mode."""
        k, pad = self.kernel, self.kernel // 2
        weight = torch.zeros(self.cout, self.cin // self.groups, k, k)
        bias = torch.zeros(self.cout)
        for branch in self.convs:
            w, b = _with_bn(branch[0].weight, branch[1])
            weight, bias = weight + w, bias + b
        if self.scale is not None:
            w, b = _with_bn(self.scale[0].weight, self.scale[1])
            weight, bias = weight + F.pad(w, [pad, pad, pad, pad]), bias + b
        if self.identity is not None:  # a BN of x itself: the identity kernel, then that BN
            w, b = _with_bn(_identity_kernel(self.cout, self.cin // self.groups, k), self.identity)
            weight, bias = weight + w, bias + b
        return weight, bias


@torch.no_grad()
def load_folded(block: RepConvBN, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Write ``block``'s folded weight into a plain ``conv`` (no bias) followed by ``bn`` (eval mode)."""
    weight, bias = block.fold()
    conv.weight.copy_(weight)
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0)
    bn.weight.fill_(float(torch.sqrt(torch.tensor(1.0) + bn.eps)))  # so that bn(y) = y + bias exactly
    bn.bias.copy_(bias)


def _identity_kernel(cout: int, per_group: int, kernel: int) -> torch.Tensor:
    """The ``k x k`` kernel of ``y = x`` for a conv of ``cout`` outputs and ``per_group`` inputs per group."""
    eye = torch.zeros(cout, per_group, kernel, kernel)
    for c in range(cout):
        eye[c, c % per_group, kernel // 2, kernel // 2] = 1.0
    return eye


class MergedBranches(nn.Module):
    """A parametrization of a conv's ``weight``: ``sum_i g_i * K_i`` over ``branches`` k x k kernels, a 1 x 1 kernel
    (padded to k x k, when ``k > 1``) and the identity (when the shapes allow), each ``g`` a learned per-output-channel
    scale. Its original tensor is the k x k kernels stacked on the output dimension
(``parametrizations.weight.original``, ``branches * cout`` rows)."""

    def __init__(self, conv: nn.Conv2d, branches: int):
        super().__init__()
        cout, per_group, k, _ = conv.weight.shape
        self.branches, self.kernel = branches, k
        self.pointwise = nn.Parameter(torch.empty(cout, per_group, 1, 1)) if k > 1 else None
        identity = conv.in_channels == cout and conv.stride == (1, 1)
        self.register_buffer("identity", _identity_kernel(cout, per_group, k) if identity else None)
        n_scales = branches + (self.pointwise is not None) + identity
        self.scales = nn.Parameter(torch.ones(n_scales, cout))
        if self.pointwise is not None:
            nn.init.kaiming_normal_(self.pointwise, mode="fan_out", nonlinearity="relu")

    def forward(self, kernels: torch.Tensor) -> torch.Tensor:
        scales = self.scales.reshape(len(self.scales), -1, 1, 1, 1)
        stacked = kernels.reshape(self.branches, -1, *kernels.shape[1:])
        weight = (scales[: self.branches] * stacked).sum(0)
        i = self.branches
        if self.pointwise is not None:
            pad = self.kernel // 2
            weight = weight + scales[i] * F.pad(self.pointwise, [pad, pad, pad, pad])
            i += 1
        if self.identity is not None:
            weight = weight + scales[i] * self.identity
        return weight

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        """The initial branch kernels: fresh Kaiming draws, each of the conv's shape (the given weight is not kept:
        only the branches are trained)."""
        kernels = torch.empty(self.branches * weight.shape[0], *weight.shape[1:])  # 4-D: any memory format
        fan_out = weight.shape[0] * weight.shape[2] * weight.shape[3]
        return kernels.normal_(0, math.sqrt(2.0 / fan_out))


def merged_conv(cin: int, cout: int, kernel: int, stride: int, groups: int, branches: int) -> nn.Conv2d:
    """A plain ``nn.Conv2d`` (no bias) whose weight is ``MergedBranches`` of ``branches`` kernels."""
    conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
    parametrize.register_parametrization(conv, "weight", MergedBranches(conv, branches))
    return conv
