"""The weight gradient of a depthwise convolution by our C kernel (``depthwise_weight_grad.c``)."""

from __future__ import annotations

import ctypes

import torch

from supernets.native import fills_vectors, library, pointer

KERNEL_SIZES = (3, 5, 7)


def applies(x: torch.Tensor, kernel_size: int) -> bool:
    """Whether the C kernel takes this convolution: a map whose channels fill whole vectors
    (:func:`~supernets.native.fills_vectors`), a kernel size of 3, 5 or 7."""
    return fills_vectors(x) and kernel_size in KERNEL_SIZES


def depthwise_weight_grad(grad: torch.Tensor, x: torch.Tensor, kernel_size: int, stride: int,
                          padding: int, dilation: int) -> torch.Tensor | None:
    """The gradient of a square depthwise convolution's ``C x 1 x K x K`` weight, given its input
    ``x`` and output gradient ``grad``, on ``torch.get_num_threads()`` threads; None where the
    kernel does not apply (:func:`applies`, ``grad`` of ``x``'s type) or is not available
    (:mod:`supernets.native`)."""
    if not applies(x, kernel_size) or grad.dtype != x.dtype or grad.dim() != 4:
        return None
    lib = library("depthwise_weight_grad")
    if lib is None:
        return None
    x = x.contiguous(memory_format=torch.channels_last)
    grad = grad.contiguous(memory_format=torch.channels_last)
    n, c, h, w = x.shape
    threads = max(1, min(torch.get_num_threads(), n))
    parts = torch.zeros(threads, kernel_size, kernel_size, c, dtype=torch.float64)
    status = lib.depthwise_weight_grad(
        pointer(x), pointer(grad), pointer(parts), ctypes.c_int(x.dtype == torch.float64),
        *(ctypes.c_long(v) for v in (kernel_size, n, c, h, w, grad.shape[2], grad.shape[3],
                                     stride, padding, dilation, threads)))
    if status != 0:
        raise RuntimeError(f"depthwise_weight_grad refused kernel size {kernel_size}")
    return parts.sum(0).permute(2, 0, 1).unsqueeze(1).to(x.dtype)
