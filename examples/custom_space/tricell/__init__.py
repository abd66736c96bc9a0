"""tricell: a search space of your own for oneshot, in plain PyTorch.

Installed (``pip install -e examples/custom_space``), it is ``space=tricell`` on the command line.
"""

from torch import nn

from supernets import InputChoice, OpChoice, Supernet, register_op


class TriConv(nn.Sequential):
    """A new operation: ReLU, a 3x1 and a 1x3 convolution, BatchNorm."""

    def __init__(self, c: int, stride: int, affine: bool) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c, c, (3, 1), stride=(stride, 1), padding=(1, 0), bias=False),
            nn.Conv2d(c, c, (1, 3), stride=(1, stride), padding=(0, 1), bias=False),
            nn.BatchNorm2d(c, affine=affine))


register_op("tri_conv", TriConv)
OPS = ["skip_connect", "max_pool_3x3", "sep_conv_3x3", "tri_conv"]


class TriCell(nn.Module):
    """Node 1 = op(x); nodes 2 and 3 each apply an op to one earlier node they choose."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(OpChoice(f"cell/op_{i}", OPS, channels=c) for i in (1, 2, 3))
        self.inputs = nn.ModuleList(InputChoice(f"cell/input_{i}", num_inputs=i) for i in (2, 3))

    def forward(self, x):
        nodes = [x, self.ops[0](x)]
        for op, pick in zip(self.ops[1:], self.inputs):
            nodes.append(op(pick(nodes)))
        return sum(nodes[1:])


class TriNet(Supernet):
    """Stem, ``cells`` tri-cells sharing one architecture, classifier."""

    quick_options = {"channels": 8, "cells": 2}  # the sizes experiment=quick uses

    def __init__(self, *, num_classes: int = 10, in_channels: int = 3, channels: int = 16,
                 cells: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels))
        self.cells = nn.Sequential(*(TriCell(channels) for _ in range(cells)))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(channels, num_classes))

    def forward(self, x):
        return self.head(self.cells(self.stem(x)))
