"""DepthwiseConv2d: nn.Conv2d's values and gradients, with the flipped-kernel input gradient where
it applies, torch's own backward elsewhere; and its benchmark runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from supernets.depthwise import DepthwiseConv2d, _DepthwiseFunction, keeps_size
from supernets.ops import DilConv, SepConv

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import depthwise_backward  # noqa: E402


def _pair(kernel: int, stride: int, dilation: int,
          channels: int = 3) -> tuple[DepthwiseConv2d, nn.Conv2d]:
    padding = dilation * (kernel - 1) // 2
    ours = DepthwiseConv2d(channels, kernel, stride, padding, dilation).double()
    reference = nn.Conv2d(channels, channels, kernel, stride=stride, padding=padding,
                          dilation=dilation, groups=channels, bias=False).double()
    reference.load_state_dict(ours.state_dict())
    return ours, reference


@pytest.mark.parametrize("kernel, dilation", [(3, 1), (5, 1), (3, 2), (5, 2)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("channels", [3, 8])  # 8 (whole vectors): the C kernel's weight gradient
def test_values_and_gradients_are_nn_conv2d_s(kernel: int, dilation: int, stride: int,
                                              channels_last: bool, channels: int) -> None:
    torch.manual_seed(0)
    ours, reference = _pair(kernel, stride, dilation, channels)
    assert ours.even_grid == (stride == 2 and dilation == 2)
    assert ours.flipped_backward == (stride == 1 or dilation == 2)
    x = torch.randn(2, channels, 11, 11, dtype=torch.double)  # odd sizes too
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    out, expected = ours(x), reference(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    upstream = torch.randn_like(out)
    got = torch.autograd.grad(out, [x, ours.weight], upstream)
    want = torch.autograd.grad(expected, [x, reference.weight], upstream)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("size", [8, 9])
@pytest.mark.parametrize("even_grid, flipped", [(True, True), (True, False), (False, False)])
def test_dilated_stride_two_on_the_even_grid_and_either_switch_off(size: int, even_grid: bool,
                                                                   flipped: bool) -> None:
    torch.manual_seed(0)
    ours, reference = _pair(5, 2, 2)
    ours.use_fast_paths(even_grid)
    ours.flipped_backward = flipped and ours.flipped_backward
    x = torch.randn(2, 3, size, size, dtype=torch.double, requires_grad=True)
    out = ours(x)
    assert out.shape == reference(x).shape == (2, 3, (size + 1) // 2, (size + 1) // 2)
    assert ("Depthwise" in out.grad_fn.name()) == flipped
    upstream = torch.randn_like(out)
    got = torch.autograd.grad(out, [x, ours.weight], upstream)
    want = torch.autograd.grad(reference(x), [x, reference.weight], upstream)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kernel, dilation", [(3, 1), (5, 2)])
@pytest.mark.parametrize("native", [False, True])
def test_gradcheck_of_the_flipped_kernel_backward(kernel: int, dilation: int, native: bool) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 6, dtype=torch.double).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    weight = torch.randn(4, 1, kernel, kernel, dtype=torch.double, requires_grad=True)
    padding = dilation * (kernel - 1) // 2
    assert torch.autograd.gradcheck(
        lambda a, w: _DepthwiseFunction.apply(a, w, padding, dilation, native), (x, weight))


def test_only_the_gradients_asked_for_are_computed() -> None:
    torch.manual_seed(0)
    ours, reference = _pair(5, 1, 2)
    x = torch.randn(2, 3, 8, 8, dtype=torch.double, requires_grad=True)
    ours.weight.requires_grad_(False)  # as in the architecture step: weights are constants
    reference.weight.requires_grad_(False)
    (grad_x,) = torch.autograd.grad(ours(x).sum(), [x])
    torch.testing.assert_close(grad_x, torch.autograd.grad(reference(x).sum(), [x])[0])
    ours.weight.requires_grad_(True)
    plain = x.detach()  # an input that needs no gradient: only the weight's
    (grad_w,) = torch.autograd.grad(ours(plain).square().sum(), [ours.weight])
    reference.weight.requires_grad_(True)
    torch.testing.assert_close(grad_w, torch.autograd.grad(reference(plain).square().sum(),
                                                           [reference.weight])[0])


def test_the_fast_path_is_taken_only_for_size_keeping_cpu_convolutions_under_autograd() -> None:
    assert keeps_size(3, 1, 1, 1) and keeps_size(5, 1, 4, 2)
    assert not keeps_size(3, 2, 1, 1) and not keeps_size(3, 1, 0, 1)
    conv = DepthwiseConv2d(3, 3, 1, 1)
    x = torch.randn(1, 3, 5, 5, requires_grad=True)
    assert conv(x).grad_fn.name().endswith("_DepthwiseFunctionBackward")
    with torch.no_grad():
        assert conv(x).grad_fn is None
    with torch.autocast("cpu", dtype=torch.bfloat16):  # torch's kernels under autocast
        out = conv(x)
    assert out.dtype == torch.bfloat16 and "Depthwise" not in out.grad_fn.name()
    out.float().sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_the_darts_candidates_use_it_with_unchanged_state_dict_keys() -> None:
    sep, dil = SepConv(4, 4, 5, 1, 2, affine=False), DilConv(4, 4, 3, 1, 2, 2, affine=False)
    depthwise = [m for m in (*sep.modules(), *dil.modules()) if isinstance(m, DepthwiseConv2d)]
    assert len(depthwise) == 3 and all(m.flipped_backward for m in depthwise)
    assert set(dil.state_dict()) == {"1.weight", "2.weight", "3.running_mean", "3.running_var",
                                     "3.num_batches_tracked"}


def test_benchmark_prints_one_row_per_kernel(capsys) -> None:
    depthwise_backward.main(["--batch", "2", "--channels", "3", "--size", "8", "--calls", "1",
                             "--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("depthwise, batch 2, 3 channels, 8x8")
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "3x3 dilation 1", "5x5 dilation 1", "3x3 dilation 2", "5x5 dilation 2"]
    assert all("faster) | torch's weight gradient " in line for line in lines[1:])
    assert all(line.endswith("| ours n/a") for line in lines[1:])  # 3 channels: not a vector
    depthwise_backward.main(["--batch", "2", "--channels", "8", "--size", "8", "--calls", "1",
                             "--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert all(line.split("| ours ")[-1].isdigit() for line in lines[1:])
