"""Inverted-residual (MBConv) blocks and the candidate names of the proxyless space."""

from __future__ import annotations

import re

import torch
from torch import nn

from supernets.drop_path import drop_path
from supernets.errors import SpaceError
from supernets.ops import Zero

ZERO = "zero"
_MBCONV_NAME = re.compile(r"mb([1-9]\d*)_k([1-9]\d*)")


def mbconv_name(expansion: int, kernel_size: int) -> str:
    """The candidate name of an MBConv, e.g. ``mb6_k5`` for expansion 6 and a 5x5 kernel."""
    return f"mb{expansion}_k{kernel_size}"


def parse_mbconv(name: str) -> tuple[int, int]:
    """``(expansion, kernel_size)`` of a candidate name like ``mb3_k7``; others raise SpaceError."""
    match = _MBCONV_NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None or int(match.group(2)) % 2 == 0:
        raise SpaceError(f"unknown proxyless operation {name!r}; use 'zero' or 'mb<expansion>_k<odd "
                         "kernel>' such as mb6_k5")
    return int(match.group(1)), int(match.group(2))


def conv_bn(c_in: int, c_out: int, kernel_size: int, stride: int = 1, groups: int = 1,
            relu6: bool = True) -> nn.Sequential:
    """Convolution (same padding, no bias), BatchNorm and optionally ReLU6."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2,
                  groups=groups, bias=False),
        nn.BatchNorm2d(c_out)]
    if relu6:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """MobileNetV2's inverted residual: 1x1 expand, kxk depthwise, 1x1 linear projection.

    The expansion convolution is left out for ``expansion == 1``. With ``residual`` the input is
    added to the output, which needs ``stride == 1`` and ``c_in == c_out``; ``drop_prob`` (a
    0-dim tensor, see :func:`supernets.darts.derived.drop_path`) then drops the residual branch.
    """

    def __init__(self, c_in: int, c_out: int, *, kernel_size: int, stride: int, expansion: int,
                 residual: bool = False) -> None:
        super().__init__()
        if residual and (stride != 1 or c_in != c_out):
            raise SpaceError(f"an MBConv residual needs stride 1 and equal channels, got stride "
                             f"{stride} and {c_in} -> {c_out} channels")
        hidden = c_in * expansion
        layers: list[nn.Module] = [conv_bn(c_in, hidden, 1)] if expansion != 1 else []
        layers += [conv_bn(hidden, hidden, kernel_size, stride, groups=hidden),
                   conv_bn(hidden, c_out, 1, relu6=False)]
        self.body = nn.Sequential(*layers)
        self.residual = residual

    def forward(self, x: torch.Tensor, drop_prob: torch.Tensor | None = None) -> torch.Tensor:
        out = self.body(x)
        if not self.residual:
            return out
        if drop_prob is not None:
            out = drop_path(out, drop_prob, self.training)
        return x + out


def build_candidate(name: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    """A search candidate without residual (the search block adds it): an MBConv or ``zero``."""
    if name == ZERO:
        if stride != 1 or c_in != c_out:
            raise SpaceError("'zero' (skip the block) is only a candidate where the block keeps "
                             "its shape: not for the first block of a stage")
        return Zero(1)
    expansion, kernel_size = parse_mbconv(name)
    return MBConv(c_in, c_out, kernel_size=kernel_size, stride=stride, expansion=expansion)


def stem(in_channels: int, stem_channels: int, first_channels: int, stride: int = 1
         ) -> nn.Sequential:
    """3x3 convolution (stride 1 for 32x32 inputs, 2 for ImageNet's 224x224) and an
    expansion-1 3x3 MBConv."""
    return nn.Sequential(
        conv_bn(in_channels, stem_channels, 3, stride),
        MBConv(stem_channels, first_channels, kernel_size=3, stride=1, expansion=1,
               residual=stem_channels == first_channels))


def head(c_in: int, head_channels: int) -> nn.Sequential:
    """1x1 convolution to ``head_channels`` with BatchNorm and ReLU6, then global pooling."""
    return nn.Sequential(conv_bn(c_in, head_channels, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
