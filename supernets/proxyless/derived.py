"""The network a proxyless genotype describes, built from the genotype alone."""

from __future__ import annotations

import torch
from torch import nn

from supernets.drop_path import DropPathNetwork
from supernets.errors import SpaceError
from supernets.proxyless.blocks import ZERO, MBConv, head, parse_mbconv, stem
from supernets.proxyless.genotype import ProxylessGenotype


class ProxylessNetwork(DropPathNetwork):
    """The derived MobileNet-style network: stem, the chosen MBConvs (``zero`` blocks left out), head.

    ``forward(x)`` returns ``(logits, None)`` (no auxiliary head). Drop-path with probability
    :attr:`drop_path_prob` (set by the training loop, 0 by default) drops the residual branch of
    every block that keeps its shape (stochastic depth).
    """

    drop_prob: torch.Tensor

    def __init__(self, genotype: ProxylessGenotype, *, num_classes: int = 10,
                 in_channels: int = 3) -> None:
        super().__init__()
        if not isinstance(genotype, ProxylessGenotype):
            raise SpaceError("the proxyless network needs a ProxylessGenotype, "
                             f"got {type(genotype).__name__}")
        for option, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpaceError(f"proxyless network option {option} must be a positive integer, "
                                 f"got {value!r}")
        self.stem = stem(in_channels, genotype.stem_channels, genotype.first_channels)
        self.blocks = nn.ModuleList()
        c_in = genotype.first_channels
        for width, stride, ops in genotype.stages:
            for b, op in enumerate(ops):
                if op == ZERO:
                    continue
                expansion, kernel_size = parse_mbconv(op)
                block_stride = stride if b == 0 else 1
                self.blocks.append(MBConv(c_in, width, kernel_size=kernel_size, stride=block_stride,
                                          expansion=expansion,
                                          residual=block_stride == 1 and c_in == width))
                c_in = width
        self.head = head(c_in, genotype.head_channels)
        self.classifier = nn.Linear(genotype.head_channels, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x, self.drop_prob)
        return self.classifier(self.head(x)), None
