"""Proxyless genotypes: the operation of every block of a MobileNet-style network."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from supernets.errors import GenotypeError, SpaceError
from supernets.proxyless.blocks import ZERO, parse_mbconv

SPACE = "proxyless"
GENOTYPE_FIELDS = ("stem_channels", "first_channels", "head_channels", "stages", "stem_stride")
OPTIONAL_FIELDS = {"stem_stride": 1}  # absent from genotype files written before the field
STAGE_FIELDS = ("width", "stride", "ops")


def block_label(index: int) -> str:
    """The choice-point label of searchable block ``index`` (counted over all stages)."""
    return f"block_{index}"


@dataclass(frozen=True)
class ProxylessGenotype:
    """A derived proxyless network: fixed stem, stages of chosen blocks, fixed head.

    ``stages[s]`` is ``(width, stride, ops)``: the stage's output channels, the stride of its
    first block, and one operation per block (``mb<e>_k<k>`` or ``zero``, which drops the block;
    never the first block of a stage). The stem is a 3x3 convolution of stride ``stem_stride``
    (1 for 32x32 inputs, 2 for ImageNet's) to ``stem_channels`` followed by an expansion-1
    MBConv to ``first_channels``; the head is a 1x1 convolution to ``head_channels``, global
    pooling and the classifier.
    """

    stem_channels: int
    first_channels: int
    head_channels: int
    stages: tuple[tuple[int, int, tuple[str, ...]], ...]
    stem_stride: int = 1

    def __post_init__(self) -> None:
        for name in ("stem_channels", "first_channels", "head_channels"):
            object.__setattr__(self, name, _positive_int(name, getattr(self, name)))
        if isinstance(self.stem_stride, bool) or self.stem_stride not in (1, 2):
            raise GenotypeError(f"genotype field 'stem_stride' must be 1 or 2, "
                                f"got {self.stem_stride!r}")
        object.__setattr__(self, "stem_stride", int(self.stem_stride))
        if isinstance(self.stages, (str, bytes)) or not isinstance(self.stages, Sequence) \
                or not self.stages:
            raise GenotypeError("genotype field 'stages' must be a non-empty list of "
                                "[width, stride, ops] stages")
        object.__setattr__(self, "stages", tuple(
            _check_stage(s, stage) for s, stage in enumerate(self.stages)))

    @property
    def ops(self) -> tuple[str, ...]:
        """The operation of every searchable block, in order (``block_0``, ``block_1``, ...)."""
        return tuple(op for _, _, ops in self.stages for op in ops)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: channels, the stem's stride and ``{"width", "stride", "ops"}`` per
        stage."""
        return {
            "stem_channels": self.stem_channels,
            "stem_stride": self.stem_stride,
            "first_channels": self.first_channels,
            "head_channels": self.head_channels,
            "stages": [{"width": w, "stride": s, "ops": list(ops)} for w, s, ops in self.stages],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProxylessGenotype:
        """Build from :meth:`to_dict` output; errors name the bad field."""
        fields = ", ".join(GENOTYPE_FIELDS)
        if not isinstance(data, Mapping):
            raise GenotypeError(f"a proxyless genotype must be an object with fields {fields}; "
                                f"got {type(data).__name__}")
        unknown = sorted(str(key) for key in data if key not in GENOTYPE_FIELDS)
        missing = [name for name in GENOTYPE_FIELDS
                   if name not in data and name not in OPTIONAL_FIELDS]
        if unknown or missing:
            problem = (f"unknown genotype field(s) {', '.join(unknown)}" if unknown
                       else f"genotype field '{missing[0]}' is missing")
            raise GenotypeError(f"{problem}; a proxyless genotype has fields {fields}")
        stages = data["stages"]
        if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence):
            raise GenotypeError("genotype field 'stages' must be a list of "
                                "{\"width\", \"stride\", \"ops\"} objects")
        return cls(stem_channels=data["stem_channels"], first_channels=data["first_channels"],
                   head_channels=data["head_channels"],
                   stages=tuple(_stage_from_dict(s, stage) for s, stage in enumerate(stages)),
                   stem_stride=data.get("stem_stride", OPTIONAL_FIELDS["stem_stride"]))

    def to_text(self) -> str:
        """One line: ``width/s<stride>: ops`` per stage, stages separated by ``|``."""
        return " | ".join(f"{w}/s{s}: {' '.join(ops)}" for w, s, ops in self.stages)

    def __str__(self) -> str:
        return self.to_text()


def derive_proxyless_genotype(weights: Mapping[str, torch.Tensor],
                              candidates: Mapping[str, Sequence[str]], *, stem_channels: int,
                              first_channels: int, head_channels: int,
                              stages: Sequence[tuple[int, int, int]],
                              stem_stride: int = 1) -> ProxylessGenotype:
    """The strongest candidate of every block (ties go to the earlier candidate).

    ``stages`` lists ``(width, stride, depth)``; ``candidates`` and ``weights`` are keyed by
    ``block_0 .. block_{sum(depth) - 1}``.
    """
    ops: list[tuple[int, int, tuple[str, ...]]] = []
    index = 0
    for width, stride, depth in stages:
        chosen = []
        for _ in range(depth):
            label = block_label(index)
            if label not in weights or label not in candidates:
                raise SpaceError(f"no architecture weights for '{label}'; pass one row per block "
                                 f"(block_0 .. block_{sum(d for _, _, d in stages) - 1})")
            chosen.append(candidates[label][int(torch.argmax(weights[label]))])
            index += 1
        ops.append((width, stride, tuple(chosen)))
    return ProxylessGenotype(stem_channels=stem_channels, first_channels=first_channels,
                             head_channels=head_channels, stages=tuple(ops),
                             stem_stride=stem_stride)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise GenotypeError(f"genotype field '{name}' must be a positive integer, got {value!r}")
    return int(value)


def _stage_from_dict(s: int, stage: Any) -> tuple[Any, Any, Any]:
    if not isinstance(stage, Mapping) or sorted(stage) != sorted(STAGE_FIELDS):
        raise GenotypeError(f"genotype field 'stages[{s}]' must be an object with fields "
                            f"{', '.join(STAGE_FIELDS)}; got {stage!r}")
    return stage["width"], stage["stride"], stage["ops"]


def _check_stage(s: int, stage: Any) -> tuple[int, int, tuple[str, ...]]:
    where = f"stages[{s}]"
    if isinstance(stage, (str, bytes)) or not isinstance(stage, Sequence) or len(stage) != 3:
        raise GenotypeError(f"genotype field '{where}' must be (width, stride, ops), got {stage!r}")
    width, stride, ops = stage
    width = _positive_int(f"{where}.width", width)
    if isinstance(stride, bool) or stride not in (1, 2):
        raise GenotypeError(f"genotype field '{where}.stride' must be 1 or 2, got {stride!r}")
    if isinstance(ops, (str, bytes)) or not isinstance(ops, Sequence) or not ops:
        raise GenotypeError(f"genotype field '{where}.ops' must be a non-empty list of operations")
    for b, op in enumerate(ops):
        if op == ZERO:
            if b == 0:
                raise GenotypeError(f"genotype field '{where}.ops[0]' is 'zero', but the first "
                                    "block of a stage cannot be skipped; choose an mb<e>_k<k> op")
            continue
        try:
            parse_mbconv(op)
        except SpaceError as err:
            raise GenotypeError(f"genotype field '{where}.ops[{b}]': {err}") from None
    return width, int(stride), tuple(ops)
