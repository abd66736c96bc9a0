"""The DARTS evaluation network: shapes, auxiliary head, drop-path, sizes and FLOPs."""

from __future__ import annotations


import pytest
import torch
from torch import nn

from supernets.darts.derived import AuxiliaryHead, DartsNetwork, DerivedCell
from supernets.drop_path import drop_path
from supernets.darts.genotype import DartsGenotype
from supernets.darts.published import get_published, list_published
from supernets.errors import SpaceError
from supernets.measure import count_flops, count_parameters, derived_params
from supernets.spaces import create_network

CONCAT = (2, 3, 4, 5)
HAND = DartsGenotype(
    normal=(("sep_conv_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 0), ("dil_conv_3x3", 2),
            ("skip_connect", 2), ("avg_pool_3x3", 3), ("skip_connect", 0), ("max_pool_3x3", 1)),
    normal_concat=CONCAT,
    reduce=(("max_pool_3x3", 0), ("skip_connect", 1), ("skip_connect", 2), ("avg_pool_3x3", 0),
            ("sep_conv_3x3", 1), ("max_pool_3x3", 3), ("skip_connect", 4), ("dil_conv_3x3", 0)),
    reduce_concat=CONCAT,
)


def _v2() -> DartsGenotype:
    return get_published("DARTS_V2")[0]


def test_training_forward_returns_logits_and_auxiliary_logits():
    torch.manual_seed(0)
    net = DartsNetwork(_v2(), num_classes=7, channels=4, layers=5).train()
    logits, logits_aux = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 7) and logits_aux.shape == (2, 7)
    (logits.sum() + logits_aux.sum()).backward()
    assert net.auxiliary_head.classifier.weight.grad is not None


def test_auxiliary_head_is_darts_head_on_8x8_maps_and_averages_larger_ones():
    torch.manual_seed(0)
    head = AuxiliaryHead(6, 5).eval()
    maps = torch.randn(3, 6, 8, 8)
    darts_form = head.classifier(head.features(maps).flatten(1))  # DARTS: the last conv leaves 1x1
    torch.testing.assert_close(head(maps), darts_form)
    net = DartsNetwork(_v2(), num_classes=7, channels=4, layers=3).train()
    logits, logits_aux = net(torch.randn(2, 3, 64, 64))  # 16x16 maps after the 2/3 reduction
    assert logits.shape == (2, 7) and logits_aux.shape == (2, 7)


def test_eval_and_no_auxiliary_give_no_auxiliary_logits():
    net = DartsNetwork(_v2(), num_classes=7, channels=4, layers=3)
    logits, logits_aux = net.eval()(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 7) and logits_aux is None
    plain = DartsNetwork(_v2(), num_classes=7, channels=4, layers=3, auxiliary=False).train()
    assert plain.auxiliary_head is None and plain(torch.randn(2, 3, 32, 32))[1] is None


def test_layout_reductions_at_thirds_and_auxiliary_after_second():
    net = DartsNetwork(_v2(), channels=4, layers=8).eval()
    shapes = []
    for cell in net.cells:
        cell.register_forward_hook(lambda module, args, out: shapes.append(tuple(out.shape[1:])))
    net(torch.randn(1, 3, 32, 32))
    # DARTS: reductions at layers // 3 and 2 * layers // 3, each halving the size, doubling C;
    # a cell outputs 4 concatenated nodes; the head reads the second reduction's 8x8 output.
    assert shapes == [(16, 32, 32)] * 2 + [(32, 16, 16)] * 3 + [(64, 8, 8)] * 3
    assert net.aux_index == 5
    assert net.auxiliary_head.features[2].in_channels == 64
    assert all(m.affine for m in net.modules() if isinstance(m, nn.BatchNorm2d))


def test_drop_path_is_identity_in_eval_mode_and_at_zero():
    x = torch.randn(8, 3, 4, 4)
    assert drop_path(x, 0.5, training=False) is x
    assert torch.equal(drop_path(x, 0.0, training=True), x)
    assert torch.equal(drop_path(x, torch.tensor(0.0), training=True), x)


def test_drop_path_drops_whole_samples_and_rescales_the_kept_ones():
    torch.manual_seed(0)
    x = torch.rand(20000, 2, 3, 3) + 0.5
    out = drop_path(x, torch.tensor(0.3), training=True)
    kept = out.flatten(1).ne(0).all(dim=1)
    dropped = out.flatten(1).eq(0).all(dim=1)
    assert bool((kept | dropped).all())  # one decision per sample
    assert torch.allclose(out[kept], x[kept] / 0.7)
    assert kept.float().mean().item() == pytest.approx(0.7, abs=0.01)
    assert out.mean().item() == pytest.approx(x.mean().item(), rel=0.02)  # unbiased


@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_drop_path_rejects_bad_probability(p):
    with pytest.raises(SpaceError, match=r"\[0, 1\)"):
        drop_path(torch.ones(2, 1, 1, 1), p, training=True)


def _cell(cell, *, reduction: bool = False) -> DerivedCell:
    return DerivedCell(cell, CONCAT, c_prev_prev=4, c_prev=4, c=4, reduction=reduction,
                       reduction_prev=False)


def test_drop_path_skips_identity_edges_only():
    identity = _cell((("skip_connect", 0), ("skip_connect", 1)) * 4)
    pooled = _cell((("max_pool_3x3", 0), ("skip_connect", 1)) * 4)
    assert identity.droppable == [False] * 8
    assert pooled.droppable == [True, False] * 4
    assert _cell((("skip_connect", 0),) * 8, reduction=True).droppable[:2] == [True, True]
    s0, s1 = torch.randn(16, 4, 8, 8), torch.randn(16, 4, 8, 8)
    for cell in (identity, pooled):
        cell.train()
        torch.manual_seed(0)
        reference = cell(s0, s1, 0.0)
        torch.manual_seed(0)
        dropped = cell(s0, s1, 0.9)
        assert torch.equal(reference, dropped) == (cell is identity)


def test_network_drop_path_prob_only_acts_in_training():
    net = DartsNetwork(_v2(), channels=4, layers=3, auxiliary=False).eval()
    x = torch.randn(4, 3, 32, 32)
    reference = net(x)[0]
    net.drop_path_prob = 0.5
    assert net.drop_path_prob == 0.5 and "drop_prob" not in net.state_dict()
    assert torch.equal(net(x)[0], reference)
    with pytest.raises(SpaceError, match=r"\[0, 1\)"):
        net.drop_path_prob = 1.0


@pytest.mark.parametrize("name", list_published())
def test_each_published_genotype_builds_and_runs(name):
    genotype, meta = get_published(name)
    net = create_network("darts", genotype, num_classes=10, channels=4, layers=3).train()
    net.drop_path_prob = 0.2
    logits, logits_aux = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == logits_aux.shape == (2, 10)
    assert torch.isfinite(logits).all()
    # At the paper's size (36 channels, 20 cells) the count is within 5 % of the published one.
    assert derived_params("darts", genotype) / 1e6 == pytest.approx(meta["params_m"], rel=0.05)


def test_darts_v2_size_matches_the_reference_code():
    # The DARTS reference code logs "param size = 3.349342MB" for DARTS_V2 at 36 ch / 20 cells.
    assert derived_params("darts", _v2()) == 3_349_342
    net = DartsNetwork(_v2())
    assert count_parameters(net) == 3_349_342
    assert count_parameters(net, skip=()) > 3_349_342  # the auxiliary head


def _relu_conv_bn(c_in: int, c_out: int) -> int:
    return c_in * c_out + 2 * c_out  # 1x1 conv, affine BN


def _factorized_reduce(c_in: int, c_out: int) -> int:
    return 2 * c_in * (c_out // 2) + 2 * c_out  # two 1x1 convs to c_out / 2, affine BN


def _dil_conv(c: int, k: int) -> int:
    return c * k * k + c * c + 2 * c  # depthwise kxk, pointwise 1x1, affine BN


def _sep_conv(c: int, k: int) -> int:
    return 2 * _dil_conv(c, k)


def test_parameter_count_of_a_small_network_by_hand():
    # channels 4, layers 3: cell 0 normal (C=4), cells 1 and 2 reductions (C=8, C=16).
    stem = 3 * 12 * 3 * 3 + 2 * 12
    cell0 = 2 * _relu_conv_bn(12, 4) + _sep_conv(4, 3) + _dil_conv(4, 3)
    cell1 = (_relu_conv_bn(12, 8) + _relu_conv_bn(16, 8)
             + _factorized_reduce(8, 8) + _sep_conv(8, 3) + _dil_conv(8, 3))
    cell2 = (_factorized_reduce(16, 16) + _relu_conv_bn(32, 16)
             + _factorized_reduce(16, 16) + _sep_conv(16, 3) + _dil_conv(16, 3))
    classifier = 64 * 10 + 10
    auxiliary = 64 * 128 + 2 * 128 + 128 * 768 * 2 * 2 + 2 * 768 + 768 * 10 + 10
    net = DartsNetwork(HAND, num_classes=10, channels=4, layers=3)
    assert count_parameters(net) == stem + cell0 + cell1 + cell2 + classifier
    assert count_parameters(net, skip=()) == stem + cell0 + cell1 + cell2 + classifier + auxiliary


def test_flops_of_a_known_convolution_and_linear_layer():
    conv = nn.Conv2d(3, 12, 3, padding=1, bias=False)
    assert count_flops(conv, (1, 3, 32, 32)) == 2 * (3 * 3 * 3) * 12 * 32 * 32
    assert count_flops(nn.Linear(64, 10), (1, 64)) == 2 * 64 * 10


def test_counts_are_deterministic_and_keep_the_training_mode():
    torch.manual_seed(0)
    first = DartsNetwork(HAND, channels=4, layers=3).train()
    torch.manual_seed(1)
    second = DartsNetwork(HAND, channels=4, layers=3)
    assert count_parameters(first) == count_parameters(second)
    flops = count_flops(first)
    assert first.training
    assert flops == count_flops(first) == count_flops(second) > 2 * 27 * 12 * 32 * 32


def test_bad_network_options_are_one_line_errors():
    with pytest.raises(SpaceError, match="layers must be an integer >= 3"):
        DartsNetwork(_v2(), layers=2)
    with pytest.raises(SpaceError, match="bad option for the network of space 'darts'"):
        create_network("darts", _v2(), num_classes=10, width=3)


def test_none_options_fall_back_to_the_evaluation_defaults():
    net = create_network("darts", _v2(), num_classes=10, channels=None, layers=None)
    assert len(net.cells) == 20 and net.stem[0].out_channels == 3 * 36


def test_auxiliary_head_on_small_images_is_a_one_line_error():
    net = create_network("darts", _v2(), num_classes=10, channels=4, layers=3).train()
    with pytest.raises(SpaceError, match=r"auxiliary head needs maps of at least 5x5 .* got 2x2; "
                                         r"set network.auxiliary=false"):
        net(torch.randn(2, 3, 8, 8))
    assert net(torch.randn(2, 3, 32, 32))[1].shape == (2, 10)
