"""The NAS-Bench-201 operations and the residual block between the network's stages."""

from __future__ import annotations

import torch
from torch import nn

from supernets.errors import SpaceError
from supernets.ops import Zero

NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
                              "avg_pool_3x3")


class NorConv(nn.Sequential):
    """ReLU, convolution, BatchNorm as NAS-Bench-201 builds it (``ReLUConvBN``).

    As in the benchmark's code, the convolution has a bias exactly when the BatchNorm is not
    affine (the search network's setting).
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, affine: bool) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2,
                      bias=not affine),
            nn.BatchNorm2d(c_out, affine=affine),
        )


def create_nb201_op(name: str, c: int, affine: bool) -> nn.Module:
    """Build NAS-Bench-201 operation ``name`` on ``c`` channels (cell edges keep the resolution)."""
    if name == "none":
        return Zero(1)
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return NorConv(c, c, 1, 1, affine)
    if name == "nor_conv_3x3":
        return NorConv(c, c, 3, 1, affine)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise SpaceError(f"unknown NAS-Bench-201 operation '{name}'; choose one of: "
                     f"{', '.join(NB201_OPS)}")


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
