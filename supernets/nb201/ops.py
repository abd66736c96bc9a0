"""The NAS-Bench-201 operations (in the op registry) and the residual block between stages."""

from __future__ import annotations

import torch
from torch import nn

from supernets.ops import NorConv

NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
                              "avg_pool_3x3")


class ResidualReduction(nn.Module):
    """The block between stages: two 3x3 ReLU-conv-BN (the first with stride 2) plus a shortcut
    of 2x2 average pooling and a 1x1 convolution (the benchmark's ``ResNetBasicblock``)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = NorConv(c_in, c_out, 3, 2, affine=True)
        self.conv_b = NorConv(c_out, c_out, 3, 1, affine=True)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2),
                                      nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))
