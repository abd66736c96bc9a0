"""supernets.batchnorm.BatchNorm2d: nn.BatchNorm2d's values, gradients and running statistics,
computed through the wide channels-last view for maps of fewer than 16 channels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from supernets.batchnorm import BatchNorm2d, use_batchnorm_wide_view, view_factor
from supernets.ops import create_op

CL = torch.channels_last


def _pair(channels: int, affine: bool, momentum: float | None) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    reference = nn.BatchNorm2d(channels, affine=affine, momentum=momentum).double()
    if affine:
        with torch.no_grad():
            reference.weight.normal_()
            reference.bias.normal_()
    ours = BatchNorm2d(channels, affine=affine, momentum=momentum).double()
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def _uses_the_view(out: torch.Tensor) -> bool:
    return "ViewBatchNorm" in type(out.grad_fn).__name__


@pytest.mark.parametrize("shape, k", [((4, 8, 6, 8), 2), ((3, 3, 5, 4), 4), ((2, 5, 4, 6), 2),
                                      ((2, 1, 3, 16), 16)])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_same_values_gradients_and_statistics(shape: tuple[int, ...], k: int, affine: bool,
                                              momentum: float | None) -> None:
    reference, ours = _pair(shape[1], affine, momentum)
    generator = torch.Generator().manual_seed(1)
    for _ in range(2):  # the running statistics after two updates
        x = (3 * torch.randn(shape, generator=generator, dtype=torch.float64) + 1)
        x = x.to(memory_format=CL).requires_grad_()
        grad = torch.randn(shape, generator=generator, dtype=torch.float64)
        expected, out = reference(x), ours(x)
        assert view_factor(x) == k and _uses_the_view(out)
        assert out.is_contiguous(memory_format=CL)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
        inputs = [x, *reference.parameters()]
        for mine, theirs in zip(torch.autograd.grad(out, [x, *ours.parameters()], grad),
                                torch.autograd.grad(expected, inputs, grad)):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-12)
    for name, buffer in reference.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], buffer, rtol=0, atol=1e-14)


def test_gradcheck() -> None:
    x = torch.randn(2, 4, 3, 4, dtype=torch.float64).to(memory_format=CL).requires_grad_()
    norm = BatchNorm2d(4).double()
    with torch.no_grad():
        norm.weight.normal_()
    assert _uses_the_view(norm(x))
    assert torch.autograd.gradcheck(norm, (x,))


@pytest.mark.parametrize("case", ["16 channels", "NCHW", "evaluation", "odd width"])
def test_everything_else_is_torchs(case: str) -> None:
    channels = 16 if case == "16 channels" else 8
    x = torch.randn(2, channels, 4, 3 if case == "odd width" else 4)
    if case != "NCHW":
        x = x.to(memory_format=CL)
    norm = BatchNorm2d(channels)
    if case == "evaluation":
        norm.eval()
    reference = nn.BatchNorm2d(channels).train(norm.training)
    out = norm(x.requires_grad_())
    assert not _uses_the_view(out)
    torch.testing.assert_close(out, reference(x))


def test_evaluation_without_running_statistics_uses_the_batch() -> None:
    reference = nn.BatchNorm2d(8, track_running_stats=False).eval()
    norm = BatchNorm2d(8, track_running_stats=False).eval()
    x = torch.randn(4, 8, 4, 4).to(memory_format=CL).requires_grad_()
    out = norm(x)
    assert _uses_the_view(out)
    torch.testing.assert_close(out, reference(x))


def test_the_candidates_use_it_with_torchs_state_dict() -> None:
    op = create_op("sep_conv_3x3", 8, 1, affine=False)
    norms = [m for m in op.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(type(m) is BatchNorm2d for m in norms)
    assert all(set(m.state_dict()) == set(nn.BatchNorm2d(8, affine=False).state_dict())
               for m in norms)


def test_switched_off_it_is_torchs() -> None:
    x = torch.randn(4, 8, 4, 4).to(memory_format=CL).requires_grad_()
    norm = BatchNorm2d(8)
    use_batchnorm_wide_view(norm, False)
    assert not _uses_the_view(norm(x))
    use_batchnorm_wide_view(norm, True)
    assert _uses_the_view(norm(x))
