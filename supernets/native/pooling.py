"""Max and average pooling of channels-last CPU maps by our C kernels (``pooling.c``)."""

from __future__ import annotations

import ctypes

import torch

from supernets.native import capturing_a_graph, fills_vectors, library, pointer


def applies(x: torch.Tensor) -> bool:
    """Whether the C kernels take ``x`` (a channels-last float32 or float64 CPU map whose
    channels fill whole vectors: :func:`~supernets.native.fills_vectors`), are available, and
    no graph is being recorded (:func:`~supernets.native.capturing_a_graph`)."""
    return (fills_vectors(x) and x.is_contiguous(memory_format=torch.channels_last)
            and not capturing_a_graph() and library("pooling") is not None)


def _output(x: torch.Tensor, kernel_size: int, stride: int, padding: int) -> torch.Tensor:
    n, c, h, w = x.shape
    size = [(side + 2 * padding - kernel_size) // stride + 1 for side in (h, w)]
    return torch.empty(n, c, *size, dtype=x.dtype, memory_format=torch.channels_last)


def _call(name: str, x: torch.Tensor, out: torch.Tensor, tensors: list[torch.Tensor],
          geometry: tuple[int, int, int], flags: tuple[int, ...] = ()) -> None:
    """Run ``name_float`` or ``name_double`` on ``tensors``, given the sizes of the input ``x``
    (or its gradient) and of the output ``out`` (or its gradient), ``geometry`` (kernel size,
    stride, padding) and ``flags``; only where :func:`applies`."""
    lib = library("pooling")
    if lib is None:
        raise RuntimeError("the pooling C kernels are not available; check applies() first")
    function = getattr(lib, f"{name}_{'double' if x.dtype == torch.float64 else 'float'}")
    sizes = (*x.shape, *out.shape[2:], *geometry)
    threads = max(1, min(torch.get_num_threads(), x.shape[0]))
    function(*(pointer(t) for t in tensors), *(ctypes.c_long(v) for v in sizes),
             *(ctypes.c_int(v) for v in flags), ctypes.c_long(threads))


def max_pool(x: torch.Tensor, kernel_size: int, stride: int, padding: int) -> torch.Tensor:
    """``F.max_pool2d(x, kernel_size, stride, padding)``."""
    out = _output(x, kernel_size, stride, padding)
    _call("max_pool_forward", x, out, [x, out], (kernel_size, stride, padding))
    return out


def max_pool_backward(x: torch.Tensor, out: torch.Tensor, grad: torch.Tensor, kernel_size: int,
                      stride: int, padding: int) -> torch.Tensor:
    """The input gradient of :func:`max_pool` of ``x`` (its output ``out``)."""
    grad = grad.contiguous(memory_format=torch.channels_last)
    grad_x = torch.empty_like(x, memory_format=torch.channels_last)
    _call("max_pool_backward", x, out, [x, out, grad, grad_x], (kernel_size, stride, padding))
    return grad_x


def avg_pool(x: torch.Tensor, kernel_size: int, stride: int, padding: int,
             count_include_pad: bool) -> torch.Tensor:
    """``F.avg_pool2d(x, kernel_size, stride, padding, count_include_pad=...)``."""
    out = _output(x, kernel_size, stride, padding)
    _call("avg_pool_forward", x, out, [x, out], (kernel_size, stride, padding),
          (count_include_pad,))
    return out


def avg_pool_backward(grad: torch.Tensor, input_shape: torch.Size, kernel_size: int, stride: int,
                      padding: int, count_include_pad: bool) -> torch.Tensor:
    """The input gradient of :func:`avg_pool` of an input of ``input_shape``."""
    grad = grad.contiguous(memory_format=torch.channels_last)
    grad_x = torch.empty(input_shape, dtype=grad.dtype).contiguous(memory_format=torch.channels_last)
    _call("avg_pool_backward", grad_x, grad, [grad, grad_x], (kernel_size, stride, padding),
          (count_include_pad,))
    return grad_x
