"""The ImageNet ProxylessNAS space (experiment=proxyless_imagenet): the paper's 224x224 network from
the same space class as the 32x32 one, its preset, and its latency table's settings."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import compose_search
from oneshot.commandline.checks import validate_overrides
from supernets.measure import count_parameters
from supernets.proxyless.genotype import ProxylessGenotype
from supernets.proxyless.search import ProxylessSupernet
from supernets.spaces import create_network

PAPER_WIDTHS = [24, 40, 80, 96, 192, 320]
PAPER_STRIDES = [2, 2, 2, 1, 2, 1]
OPS = ["mb3_k3", "mb3_k5", "mb3_k7", "mb6_k3", "mb6_k5", "mb6_k7"]


def _preset_space() -> dict[str, object]:
    cfg = compose_search("experiment=proxyless_imagenet", base=())
    return {k: v for k, v in cfg.space.items() if k != "name"}


def test_preset_is_the_papers_imagenet_search() -> None:
    cfg = compose_search("experiment=proxyless_imagenet", base=())
    assert cfg.space.name == "proxyless" and cfg.algorithm.name == "proxyless"
    assert _preset_space() == {
        "stem_channels": 32, "stem_stride": 2, "first_channels": 16, "widths": PAPER_WIDTHS,
        "depths": [4, 4, 4, 4, 4, 1], "strides": PAPER_STRIDES, "head_channels": 1280,
        "kernel_sizes": [3, 5, 7], "expansions": [3, 6], "zero": True}
    assert cfg.task.name == "imagefolder" and cfg.task.image_size == 224
    assert cfg.task.train_crop == "random_resized"
    weights, arch = cfg.algorithm.weight_optimizer, cfg.algorithm.arch_optimizer
    assert (weights.lr, weights.momentum, weights.weight_decay, weights.lr_min) == (
        0.025, 0.9, 4e-5, 0.0)
    assert (arch.lr, list(arch.betas), arch.weight_decay) == (1e-3, [0.0, 0.999], 0.0)
    assert (cfg.algorithm.latency.form, cfg.algorithm.latency.beta) == ("mul_log", 0.3)
    assert (cfg.data.batch_size, cfg.trainer.max_epochs) == (256, 120)


def test_latency_preset_measures_the_same_space_at_224() -> None:
    cfg = validate_overrides("oneshot.conf.latency", "latency", ["experiment=proxyless_imagenet"])
    assert cfg.image_size == 224
    assert {k: v for k, v in cfg.space.items() if k != "name"} == _preset_space()
    # the 32x32 presets keep measuring at 32
    assert validate_overrides("oneshot.conf.latency", "latency",
                              ["experiment=quick_proxyless"]).image_size == 32


def test_choice_points_strides_and_candidates_of_the_full_space() -> None:
    with torch.device("meta"):  # the full-width supernet, without allocating its weights
        supernet = ProxylessSupernet(num_classes=1000, **_preset_space())
    assert len(supernet.candidates) == 21
    firsts = {0, 4, 8, 12, 16, 20}  # first block of each stage: no 'zero'
    for index, (label, names) in enumerate(supernet.candidates.items()):
        assert label == f"block_{index}"
        assert names == (OPS if index in firsts else [*OPS, "zero"])
    assert supernet.stem[0][0].stride == (2, 2) and supernet.stem[0][0].out_channels == 32
    strides = [block.mixed.ops[0].body[1][0].stride[0] for block in supernet.blocks]
    expected = []
    for stride, depth in zip(PAPER_STRIDES, [4, 4, 4, 4, 4, 1]):
        expected += [stride] + [1] * (depth - 1)
    assert strides == expected
    widths = [block.mixed.ops[0].body[-1][0].out_channels for block in supernet.blocks]
    assert widths == [w for w, d in zip(PAPER_WIDTHS, [4, 4, 4, 4, 4, 1]) for _ in range(d)]
    assert supernet.head[0][0].out_channels == 1280 and supernet.classifier.out_features == 1000


def test_narrow_imagenet_supernet_downsamples_by_32() -> None:
    options = {**_preset_space(), "stem_channels": 4, "first_channels": 4,
               "widths": [4, 4, 8, 8, 8, 8], "depths": [1, 2, 1, 1, 1, 1], "head_channels": 8}
    torch.manual_seed(0)
    supernet = ProxylessSupernet(num_classes=5, **options)
    sizes = []
    hooks = [block.register_forward_hook(lambda m, i, out: sizes.append(out.shape[-1]))
             for block in supernet.blocks]
    rows = {label: torch.full((len(names),), 1 / len(names))  # every candidate, mixed
            for label, names in supernet.choice_points().items()}
    out = supernet(torch.randn(2, 3, 64, 64), rows)
    for hook in hooks:
        hook.remove()
    assert out.shape == (2, 5)
    assert sizes == [16, 8, 8, 4, 4, 2, 2]  # 64 -> 32 (stem) -> stage strides 2, 2, 2, 1, 2, 1


def _conv_bn(c_in: int, c_out: int, k: int, groups: int = 1) -> int:
    return c_in // groups * c_out * k * k + 2 * c_out


def _mbconv(c_in: int, c_out: int, k: int, e: int) -> int:
    hidden = c_in * e
    expand = _conv_bn(c_in, hidden, 1) if e != 1 else 0
    return expand + _conv_bn(hidden, hidden, k, groups=hidden) + _conv_bn(hidden, c_out, 1)


def test_fixed_imagenet_network_has_the_hand_counted_parameters_and_stride_2_stem() -> None:
    genotype = ProxylessGenotype(
        stem_channels=8, stem_stride=2, first_channels=4, head_channels=16,
        stages=((6, 2, ("mb3_k5", "zero", "mb6_k3")), (10, 2, ("mb6_k7",))))
    network = create_network("proxyless", genotype, num_classes=7)
    expected = (_conv_bn(3, 8, 3) + _mbconv(8, 4, 3, 1) + _mbconv(4, 6, 5, 3) + _mbconv(6, 6, 3, 6)
                + _mbconv(6, 10, 7, 6) + _conv_bn(10, 16, 1) + 16 * 7 + 7)
    assert count_parameters(network) == expected
    logits, _ = network.eval()(torch.randn(1, 3, 32, 32))
    assert logits.shape == (1, 7)
    conv = network.network.stem[0][0]
    assert isinstance(conv, nn.Conv2d) and conv.stride == (2, 2)
    assert ProxylessGenotype.from_dict(genotype.to_dict()) == genotype


def test_32x32_space_and_older_genotype_files_keep_a_stride_1_stem() -> None:
    assert ProxylessSupernet().stem[0][0].stride == (1, 1)
    genotype = ProxylessGenotype(stem_channels=8, first_channels=4, head_channels=16,
                                 stages=((6, 1, ("mb3_k3",)),))
    document = genotype.to_dict()
    assert document["stem_stride"] == 1
    del document["stem_stride"]  # a genotype file written before the field
    assert ProxylessGenotype.from_dict(document) == genotype


@pytest.mark.parametrize("stride", [3, 0, True])
def test_bad_stem_stride_is_one_line(stride: object) -> None:
    from supernets.errors import GenotypeError, SpaceError

    with pytest.raises(SpaceError, match=f"stem_stride must be 1 or 2, got {stride!r}"):
        ProxylessSupernet(stem_stride=stride)
    with pytest.raises(GenotypeError, match="'stem_stride' must be 1 or 2"):
        ProxylessGenotype(stem_channels=8, first_channels=4, head_channels=16,
                          stages=((6, 1, ("mb3_k3",)),), stem_stride=stride)
