"""The proxyless search space: one operation choice per searchable MBConv block."""

from __future__ import annotations

import numbers
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from supernets.choices import ChoiceValue, OpChoice
from supernets.errors import SpaceError
from supernets.proxyless.blocks import ZERO, build_candidate, head, mbconv_name, parse_mbconv, stem
from supernets.proxyless.genotype import ProxylessGenotype, block_label, derive_proxyless_genotype
from supernets.supernet import Supernet

# ProxylessNAS's stage widths and depths; strides adapted to 32x32 inputs (stride-1 stem and
# first stage: 32 -> 32 -> 16 -> 8 -> 8 -> 4 -> 4).
DEFAULT_WIDTHS = (24, 40, 80, 96, 192, 320)
DEFAULT_DEPTHS = (4, 4, 4, 4, 4, 1)
DEFAULT_STRIDES = (1, 2, 2, 1, 2, 1)
# The paper's ImageNet network (Cai et al., 2019, Sec. 4.2; reference code's stride_stages and
# stride-2 first convolution): 224 -> 112 (stem) -> 56, 28, 14, 14, 7, 7.
IMAGENET_STEM_STRIDE = 2
IMAGENET_STRIDES = (2, 2, 2, 1, 2, 1)


class SearchBlock(nn.Module):
    """A block whose MBConv is chosen: ``x + mixed(x)`` when the shape is kept, else ``mixed(x)``.

    In the fixed network the residual branch is dropped with the drop-path probability
    (stochastic depth), and a block that chose ``zero`` is the identity.
    """

    def __init__(self, label: str, candidates: Sequence[str], c_in: int, c_out: int,
                 stride: int) -> None:
        super().__init__()
        self.residual = stride == 1 and c_in == c_out
        self.mixed = OpChoice(label, candidates, drop_path=self.residual,
                              build=lambda name: build_candidate(name, c_in, c_out, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.mixed(x)
        return x + out if self.residual else out


class ProxylessSupernet(Supernet):
    """A MobileNetV2-style network whose blocks are each a choice point.

    Stem (3x3 convolution of stride ``stem_stride`` to ``stem_channels`` and an MBConv1 to
    ``first_channels``), then stage
    ``s`` of ``depths[s]`` blocks of ``widths[s]`` output channels, the first with stride
    ``strides[s]``, then the head (1x1 convolution to ``head_channels``, pooling, classifier).
    Every block chooses ``mb<e>_k<k>`` for each expansion and kernel size; blocks after the
    first of a stage may also choose ``zero`` (skip the block) when ``zero`` is set. The
    genotype's text form leaves out the stem and head, so it is not read back.

    The defaults are the 32x32 (CIFAR) network; ``stem_stride=2`` with
    ``strides=IMAGENET_STRIDES`` is the paper's ImageNet network at 224x224.
    """

    genotype_class = ProxylessGenotype

    def __init__(self, *, num_classes: int = 10, in_channels: int = 3, stem_channels: int = 32,
                 stem_stride: int = 1, first_channels: int = 16, widths: Sequence[int] = DEFAULT_WIDTHS,
                 depths: Sequence[int] = DEFAULT_DEPTHS, strides: Sequence[int] = DEFAULT_STRIDES,
                 head_channels: int = 1280, kernel_sizes: Sequence[int] = (3, 5, 7),
                 expansions: Sequence[int] = (3, 6), zero: bool = True) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels),
                            ("stem_channels", stem_channels), ("first_channels", first_channels),
                            ("head_channels", head_channels)):
            _positive(name, value)
        widths, depths, strides = (tuple(_positive_list(name, values)) for name, values in
                                   (("widths", widths), ("depths", depths), ("strides", strides)))
        if not len(widths) == len(depths) == len(strides):
            raise SpaceError(f"space options widths, depths and strides need one entry per stage, "
                             f"got {len(widths)}, {len(depths)} and {len(strides)}")
        if any(s not in (1, 2) for s in strides):
            raise SpaceError(f"space option strides must hold 1 or 2 per stage, got {list(strides)}")
        if stem_stride not in (1, 2) or isinstance(stem_stride, bool):
            raise SpaceError(f"space option stem_stride must be 1 or 2, got {stem_stride!r}")
        kernel_sizes = _positive_list("kernel_sizes", kernel_sizes)
        if any(k % 2 == 0 for k in kernel_sizes):
            raise SpaceError(f"space option kernel_sizes must be odd, got {list(kernel_sizes)}")
        ops = [mbconv_name(e, k) for e in _positive_list("expansions", expansions)
               for k in kernel_sizes]
        if len(set(ops)) != len(ops):
            raise SpaceError(f"space options expansions and kernel_sizes repeat a candidate: {ops}")
        self.skeleton = {"stem_channels": stem_channels, "stem_stride": stem_stride,
                         "first_channels": first_channels,
                         "head_channels": head_channels,
                         "stages": tuple(zip(widths, strides, depths))}
        self.stem = stem(in_channels, stem_channels, first_channels, stem_stride)
        self.candidates: dict[str, list[str]] = {}
        self.blocks = nn.ModuleList()
        c_in = first_channels
        for width, depth, stride in zip(widths, depths, strides):
            for b in range(depth):
                names = ops + [ZERO] if zero and b > 0 else list(ops)
                label = block_label(len(self.blocks))
                self.candidates[label] = names
                self.blocks.append(SearchBlock(label, names, c_in, width, stride if b == 0 else 1))
                c_in = width
        self.head = head(c_in, head_channels)
        self.classifier = nn.Linear(head_channels, num_classes)

    def derive(self, weights: Mapping[str, torch.Tensor]) -> ProxylessGenotype:
        """The strongest candidate per block, with the network's skeleton."""
        return derive_proxyless_genotype(weights, self.candidates, **self.skeleton)

    def genotype_from_choices(self, chosen: Mapping[str, ChoiceValue]) -> ProxylessGenotype:
        return derive_proxyless_genotype(
            {label: torch.tensor([float(name == chosen[label]) for name in names])
             for label, names in self.candidates.items()}, self.candidates, **self.skeleton)

    @classmethod
    def genotype_choices(cls, genotype: Any) -> dict[str, ChoiceValue]:
        cls.require_genotype(genotype)
        return {block_label(i): op for i, op in enumerate(genotype.ops)}


    @classmethod
    def fixed_network_options(cls, genotype: Any, options: Mapping[str, Any]) -> dict[str, Any]:
        """The network's shape comes from the genotype, which records every stage."""
        cls.require_genotype(genotype)
        mbconvs = [parse_mbconv(op) for op in genotype.ops if op != ZERO]
        return {"stem_channels": genotype.stem_channels,
                "stem_stride": genotype.stem_stride,
                "first_channels": genotype.first_channels,
                "head_channels": genotype.head_channels,
                "widths": [w for w, _, _ in genotype.stages],
                "strides": [s for _, s, _ in genotype.stages],
                "depths": [len(ops) for _, _, ops in genotype.stages],
                "expansions": sorted({e for e, _ in mbconvs}),
                "kernel_sizes": sorted({k for _, k in mbconvs})}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.classifier(self.head(x))


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise SpaceError(f"space option {name} must be a positive integer, got {value!r}")
    return int(value)


def _positive_list(name: str, values: Any) -> list[int]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise SpaceError(f"space option {name} must be a non-empty list of positive integers, "
                         f"got {values!r}")
    return [_positive(name, value) for value in values]
