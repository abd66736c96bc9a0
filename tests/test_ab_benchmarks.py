"""The alternating A/B benchmarks (recompute_ab.py, shared_relu_ab.py, kernel_ab.py): their
shared timing loop and what they print."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import kernel_ab  # noqa: E402
import profile_darts_step  # noqa: E402
import recompute_ab  # noqa: E402
import shared_relu_ab  # noqa: E402
from supernets.batchnorm import BatchNorm2d, use_batchnorm_wide_view  # noqa: E402
from supernets.depthwise import DepthwiseConv2d, use_depthwise_fast_paths  # noqa: E402

TINY = ["--batch", "2", "--channels", "2", "--layers", "3"]


def test_variants_rotate_every_round_after_an_untimed_one() -> None:
    args, setup = profile_darts_step.ab_setup(TINY, "t", rounds=2)
    order: list[str] = []
    seconds = profile_darts_step.alternating_step_seconds(setup, ("a", "b", "c"), order.append,
                                                          args.rounds)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert {k: len(v) for k, v in seconds.items()} == {"a": 2, "b": 2, "c": 2}
    assert all(t > 0 for times in seconds.values() for t in times)


def test_both_scripts_print_a_ratio_per_variant(capsys) -> None:
    recompute_ab.main([*TINY, "--rounds", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "recompute none", "recompute weighted", "recompute edge", "recompute cell"]
    assert lines[1].endswith("1.00x none")
    shared_relu_ab.main([*TINY, "--rounds", "1"])
    lines = capsys.readouterr().out.splitlines()
    old, new, constant = (float(line.split("keeps " if "keeps" in line else ": ")[1].split()[0])
                          for line in lines[:3])
    assert constant < new < old  # one ReLU per edge keeps less; constant weights less again
    assert "new/old" in lines[-1]


def test_depthwise_fast_paths_switch_off_and_back_on(capsys) -> None:
    args, setup = profile_darts_step.ab_setup(TINY, "t", rounds=1)
    modules = [m for m in setup[0].modules() if isinstance(m, DepthwiseConv2d)]
    flipped = [m for m in modules if m.flipped_backward]
    even = [m for m in modules if m.even_grid]
    assert flipped and even  # sep_conv / dil_conv, and the reduction cells' dil_conv
    use_depthwise_fast_paths(setup[0], False)
    assert not any(m.flipped_backward or m.even_grid for m in modules)
    use_depthwise_fast_paths(setup[0], True)
    assert [m for m in modules if m.flipped_backward] == flipped
    assert [m for m in modules if m.even_grid] == even
    kernel_ab.main(["depthwise", *TINY, "--rounds", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("batch 2 | channels 2 | cells 3") and "new/old" in lines[1]


def test_batchnorm_wide_view_switches_off_and_back_on(capsys) -> None:
    args, setup = profile_darts_step.ab_setup(TINY, "t", rounds=1)
    norms = [m for m in setup[0].modules() if isinstance(m, BatchNorm2d)]
    assert norms and all(m.wide_view for m in norms)
    use_batchnorm_wide_view(setup[0], False)
    assert not any(m.wide_view for m in norms)
    use_batchnorm_wide_view(setup[0], True)
    assert all(m.wide_view for m in norms)
    kernel_ab.main(["batchnorm", *TINY, "--rounds", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("batch 2 | channels 2 | cells 3") and "new/old" in lines[1]


@pytest.mark.parametrize("kernel, switch", [("foldednorm", "fold_norms"),
                                            ("native", "native")])
def test_folded_norms_and_native_gradients_switch_off_and_back_on(kernel: str, switch: str,
                                                                   capsys) -> None:
    args, setup = profile_darts_step.ab_setup(TINY, "t", rounds=1)
    owners = [m for m in setup[0].modules() if hasattr(m, switch)]
    assert owners and all(getattr(m, switch) for m in owners)
    kernel_ab.KERNELS[kernel](setup[0], False)
    assert not any(getattr(m, switch) for m in owners)
    kernel_ab.KERNELS[kernel](setup[0], True)
    assert all(getattr(m, switch) for m in owners)
    kernel_ab.main([kernel, *TINY, "--rounds", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("batch 2 | channels 2 | cells 3") and "new/old" in lines[1]


def test_kernel_ab_names_its_kernels() -> None:
    with pytest.raises(SystemExit,
                       match=r"usage: kernel_ab.py \{depthwise,batchnorm,foldednorm,native\}"):
        kernel_ab.main(["relu"])
