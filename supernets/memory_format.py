"""The memory format a map is laid out in, for copies that keep it."""

from __future__ import annotations

import torch


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """Channels-last for a channels-last map (that is not also plainly contiguous, as maps of one
    channel or one pixel are), else contiguous."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
