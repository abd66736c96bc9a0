"""The DARTS evaluation network (NetworkCIFAR of Liu et al., 2019) built from a genotype alone."""

from __future__ import annotations

import torch
from torch import nn

from supernets.darts.genotype import DartsGenotype
from supernets.drop_path import DropPathNetwork, drop_path
from supernets.errors import SpaceError
from supernets.ops import FactorizedReduce, ReLUConvBN, create_op


class DerivedCell(nn.Module):
    """One discrete DARTS cell: each node sums two chosen operations of earlier states."""

    def __init__(self, cell: tuple[tuple[str, int], ...], concat: tuple[int, ...], *,
                 c_prev_prev: int, c_prev: int, c: int, reduction: bool,
                 reduction_prev: bool) -> None:
        super().__init__()
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, c, affine=True)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine=True)
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0, affine=True)
        self.inputs = [j for _, j in cell]
        self.concat = list(concat)
        self.ops = nn.ModuleList(
            create_op(name, c, 2 if reduction and j < 2 else 1, affine=True) for name, j in cell)
        self.droppable = [not isinstance(op, nn.Identity) for op in self.ops]

    @property
    def multiplier(self) -> int:
        """How many node outputs the cell concatenates (its output is ``multiplier * c``)."""
        return len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor,
                drop_prob: float | torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for t in range(0, len(self.ops), 2):
            node = None
            for op, j, droppable in zip(self.ops[t:t + 2], self.inputs[t:t + 2],
                                        self.droppable[t:t + 2]):
                h = op(states[j])
                if droppable:
                    h = drop_path(h, drop_prob, self.training)
                node = h if node is None else node + h
            states.append(node)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """The DARTS CIFAR auxiliary classifier, for maps of at least 5x5.

    On the 8x8 maps of a 32x32 input it is exactly DARTS' head (its last convolution leaves 1x1);
    larger maps (larger images) leave more positions, which are averaged before the classifier.
    """

    def __init__(self, c: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),  # 8x8 -> 2x2
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 5:
            raise SpaceError(f"the DARTS auxiliary head needs maps of at least 5x5 after the 2/3 "
                             f"reduction (32x32 images give 8x8), got {x.shape[-2]}x{x.shape[-1]}; "
                             "set network.auxiliary=false for small images")
        return self.classifier(self.features(x).mean(dim=(2, 3)))


class DartsNetwork(DropPathNetwork):
    """The DARTS evaluation network: a stem and ``layers`` cells of one genotype.

    Reduction cells sit at 1/3 and 2/3 of depth (channels double at each); all BatchNorms are
    affine. ``forward(x)`` returns ``(logits, logits_aux)``: ``logits_aux`` comes from the
    auxiliary head after the 2/3 reduction cell in training mode when ``auxiliary`` is set, and
    is ``None`` otherwise. Drop-path is applied to the output of every operation that is not an
    identity, with probability :attr:`drop_path_prob`, which the training loop sets (0 by default).
    """

    drop_prob: torch.Tensor

    def __init__(self, genotype: DartsGenotype, *, num_classes: int = 10, channels: int = 36,
                 layers: int = 20, auxiliary: bool = True, stem_multiplier: int = 3,
                 in_channels: int = 3) -> None:
        super().__init__()
        if not isinstance(genotype, DartsGenotype):
            raise SpaceError("the DARTS network needs a DartsGenotype, "
                             f"got {type(genotype).__name__}")
        for option, value, low in (("num_classes", num_classes, 1), ("channels", channels, 1),
                                   ("layers", layers, 3), ("stem_multiplier", stem_multiplier, 1),
                                   ("in_channels", in_channels, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SpaceError(f"DARTS network option {option} must be an integer >= {low}, "
                                 f"got {value!r}")
        self.aux_index = 2 * layers // 3
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        c_aux = c_prev
        for i in range(layers):
            reduction = i in (layers // 3, self.aux_index)
            if reduction:
                c_curr *= 2
            cell, concat = ((genotype.reduce, genotype.reduce_concat) if reduction
                            else (genotype.normal, genotype.normal_concat))
            self.cells.append(DerivedCell(cell, concat, c_prev_prev=c_prev_prev, c_prev=c_prev,
                                          c=c_curr, reduction=reduction,
                                          reduction_prev=reduction_prev))
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, self.cells[-1].multiplier * c_curr
            if i == self.aux_index:
                c_aux = c_prev
        self.auxiliary_head = AuxiliaryHead(c_aux, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits_aux = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_prob)
            if i == self.aux_index and self.auxiliary_head is not None and self.training:
                logits_aux = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits, logits_aux
