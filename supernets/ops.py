"""The operation registry: every candidate operation built by one ``(C, stride, affine)`` factory.

The DARTS primitives, NAS-Bench-201's ``nor_conv_*`` and whatever a user adds with
:func:`register_op`; an :class:`~supernets.choices.OpChoice` builds its candidates from here by
name.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from supernets.avgpool import AvgPool
from supernets.batchnorm import BatchNorm2d
from supernets.depthwise import DepthwiseConv2d
from supernets.errors import SpaceError
from supernets.maxpool import MaxPool

OpFactory = Callable[[int, int, bool], nn.Module]


class ReLUConvBN(nn.Sequential):
    """ReLU, convolution, BatchNorm: the DARTS preprocessing and 1x1 channel adapter."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, dilated depthwise convolution, pointwise convolution, BatchNorm."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int,
                 dilation: int, affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            DepthwiseConv2d(c_in, kernel_size, stride, padding, dilation),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked separable convolutions (the first one carries the stride), as in DARTS."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel_size, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel_size, 1, padding, 1, affine),
        )


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
            BatchNorm2d(c_out, affine=affine),
        )


class Zero(nn.Module):
    """The ``none`` operation: zeros of the output shape."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset stride-2 1x1 convolutions, concatenated."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        if c_out % 2:
            raise SpaceError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


def _skip(c: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)


OPS: dict[str, OpFactory] = {
    "none": lambda c, stride, affine: Zero(stride),
    "max_pool_3x3": lambda c, stride, affine: MaxPool(3, stride, 1),
    "avg_pool_3x3": lambda c, stride, affine: AvgPool(3, stride, 1, count_include_pad=False),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine),
    "sep_conv_7x7": lambda c, stride, affine: SepConv(c, c, 7, stride, 3, affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine),
    "conv_7x1_1x7": lambda c, stride, affine: nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(c, c, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
        nn.Conv2d(c, c, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
        BatchNorm2d(c, affine=affine),
    ),
    "nor_conv_1x1": lambda c, stride, affine: NorConv(c, c, 1, stride, affine),
    "nor_conv_3x3": lambda c, stride, affine: NorConv(c, c, 3, stride, affine),
}

DARTS_PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


def register_op(name: str, factory: OpFactory) -> None:
    """Add operation ``name``, built as ``factory(C, stride, affine)``.

    Registering the same factory again is allowed; a name taken by another factory is an error.
    """
    if isinstance(name, str) and OPS.get(name) is factory:
        return
    if not isinstance(name, str) or not name or name in OPS:
        raise SpaceError(f"cannot register operation {name!r}: the name is empty or taken; "
                         f"registered: {', '.join(list_ops())}")
    OPS[name] = factory


def list_ops() -> list[str]:
    """Names of every registered operation."""
    return sorted(OPS)


def create_op(name: str, c: int, stride: int, affine: bool) -> nn.Module:
    """Build operation ``name`` on ``c`` channels; ``stride`` 2 halves the resolution."""
    if name not in OPS:
        raise SpaceError(f"unknown operation '{name}'; choose one of: {', '.join(list_ops())}")
    return OPS[name](c, stride, affine)
