"""The candidate operation registry: shapes for both strides, affine switch, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from supernets.errors import SpaceError
from supernets.ops import DARTS_PRIMITIVES, OPS, FactorizedReduce, Zero, create_op, list_ops


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", list_ops())
def test_op_output_shape(name: str, stride: int, affine: bool) -> None:
    op = create_op(name, 4, stride, affine)
    out = op(torch.randn(2, 4, 8, 8))
    assert out.shape == (2, 4, 8 // stride, 8 // stride)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_ops())
def test_affine_switch_controls_batchnorm_parameters(name: str) -> None:
    for affine in (True, False):
        op = create_op(name, 4, 2, affine)
        norms = [m for m in op.modules() if isinstance(m, nn.BatchNorm2d)]
        assert all(m.affine is affine for m in norms)


def test_registry_lists_every_darts_primitive() -> None:
    assert list_ops() == sorted(OPS)
    assert set(DARTS_PRIMITIVES) <= set(list_ops())
    assert DARTS_PRIMITIVES[0] == "none" and len(DARTS_PRIMITIVES) == 8


@pytest.mark.parametrize("stride", [1, 2])
def test_none_outputs_zeros(stride: int) -> None:
    out = Zero(stride)(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 3, 8 // stride, 8 // stride)
    assert torch.count_nonzero(out) == 0


def test_skip_connect_is_identity_at_stride_1() -> None:
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(create_op("skip_connect", 4, 1, True)(x), x)
    assert isinstance(create_op("skip_connect", 4, 2, True), FactorizedReduce)


def test_unknown_op_lists_choices() -> None:
    with pytest.raises(SpaceError,
                       match="unknown operation 'conv_9x9'; choose one of: .*sep_conv_3x3"):
        create_op("conv_9x9", 4, 1, True)


def test_factorized_reduce_needs_even_channels() -> None:
    with pytest.raises(SpaceError, match="even number of output channels, got 3"):
        FactorizedReduce(4, 3)
