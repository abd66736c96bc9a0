"""The C kernels (supernets.native): the depthwise weight gradient and the pools equal torch's,
and without a compiler (or switched off) torch's kernels run instead, with the reason given
once."""

from __future__ import annotations

import fnmatch
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from torch import nn

import supernets.depthwise as depthwise_module
import supernets.mixed as mixed
import supernets.native as native
from conftest import compose_search
from oneshot.train import train
from supernets.avgpool import AvgPool
from supernets.depthwise import DepthwiseConv2d
from supernets.genotype_file import load_genotype_file
from supernets.maxpool import MaxPool
from supernets.native import pooling as native_pooling
from supernets.native import use_native_kernels
from supernets.native.depthwise import depthwise_weight_grad
from supernets.spaces import get_space
from test_algorithm_spaces import ALGORITHM_TINY, DECLARED, NO_SPACE, SPACE_TINY

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh_native(monkeypatch, tmp_path):
    """An empty kernel cache of this test's own; what was loaded is forgotten before and after."""
    monkeypatch.setenv("ONESHOT_CACHE_DIR", str(tmp_path))
    native.forget()
    yield tmp_path / "native"
    native.forget()


def _torch_weight_grad(grad: torch.Tensor, x: torch.Tensor, kernel_size: int, stride: int,
                       padding: int, dilation: int) -> torch.Tensor:
    weight = torch.empty(x.shape[1], 1, kernel_size, kernel_size, dtype=x.dtype)
    return torch.ops.aten.convolution_backward(
        grad, x, weight, None, [stride] * 2, [padding] * 2, [dilation] * 2, False, [0, 0],
        x.shape[1], [False, True, False])[1]


def _case(n: int, channels: int, size: int, kernel_size: int, stride: int, padding: int,
          dilation: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, channels, size, size + 1, dtype=dtype, generator=generator)
    weight = torch.randn(channels, 1, kernel_size, kernel_size, dtype=dtype, generator=generator)
    out = nn.functional.conv2d(x, weight, None, stride, padding, dilation, channels)
    grad = torch.randn(out.shape, dtype=dtype, generator=generator)
    channels_last = torch.channels_last
    return grad.contiguous(memory_format=channels_last), x.contiguous(memory_format=channels_last)


@pytest.mark.parametrize("kernel_size, stride, padding, dilation", [
    (3, 1, 1, 1), (5, 1, 2, 1), (7, 1, 3, 1), (3, 1, 2, 2), (5, 1, 4, 2),  # size-keeping
    (3, 2, 1, 1), (5, 2, 2, 1), (3, 1, 0, 1), (5, 1, 6, 2), (7, 2, 3, 1)])  # and not
@pytest.mark.parametrize("threads", [1, 2])
def test_the_weight_gradient_is_torchs_in_float64(kernel_size: int, stride: int, padding: int,
                                                  dilation: int, threads: int) -> None:
    grad, x = _case(3, 8, 9, kernel_size, stride, padding, dilation, torch.float64)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ours = depthwise_weight_grad(grad, x, kernel_size, stride, padding, dilation)
    finally:
        torch.set_num_threads(previous)
    assert ours is not None and ours.shape == (8, 1, kernel_size, kernel_size)
    torch.testing.assert_close(ours, _torch_weight_grad(grad, x, kernel_size, stride, padding,
                                                        dilation), rtol=0, atol=1e-10)


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
def test_float32_and_nchw_maps(memory_format: torch.memory_format) -> None:
    grad, x = _case(4, 16, 12, 5, 1, 4, 2, torch.float32)
    grad, x = grad.contiguous(memory_format=memory_format), x.contiguous(memory_format=memory_format)
    ours = depthwise_weight_grad(grad, x, 5, 1, 4, 2)
    assert ours is not None and ours.dtype == torch.float32
    torch.testing.assert_close(ours, _torch_weight_grad(grad, x, 5, 1, 4, 2), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("channels, kernel_size, dtype", [(4, 5, torch.float32),  # half a vector
                                                          (8, 4, torch.float32),  # no kernel
                                                          (8, 5, torch.float16)])
def test_what_the_kernel_does_not_take_is_left_to_torch(channels: int, kernel_size: int,
                                                        dtype: torch.dtype) -> None:
    x = torch.zeros(2, channels, 6, 6, dtype=dtype)
    assert depthwise_weight_grad(torch.zeros_like(x), x, kernel_size, 1, 0, 1) is None
    x = torch.zeros(2, 8, 6, 6)
    assert depthwise_weight_grad(torch.zeros_like(x, dtype=torch.float64), x, 3, 1, 1, 1) is None


def _module_gradients(channels: int) -> list[torch.Tensor]:
    torch.manual_seed(0)
    conv = DepthwiseConv2d(channels, 5, 1, 4, 2).double()
    x = torch.randn(2, channels, 7, 7, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    return list(torch.autograd.grad(conv(x).square().sum(), [x, conv.weight]))


def test_without_a_compiler_torch_computes_the_gradient(fresh_native, monkeypatch) -> None:
    expected = _module_gradients(8)  # by the C kernel
    native.forget()
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.warns(RuntimeWarning, match=r"'depthwise_weight_grad' is not available \(no C "
                                            r"compiler '/nonexistent/cc'"):
        got = _module_gradients(8)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    assert "no C compiler" in native.unavailable_reason("depthwise_weight_grad")
    assert native.library("depthwise_weight_grad") is None  # asked again: no second warning


def test_a_failing_compiler_is_one_line(fresh_native, monkeypatch) -> None:
    monkeypatch.setenv("CC", "false")
    with pytest.warns(RuntimeWarning) as warned:
        assert native.library("depthwise_weight_grad") is None
    assert native.unavailable_reason("depthwise_weight_grad") == "false exited with 1: no output"
    assert len(warned) == 1 and "\n" not in str(warned[0].message)
    assert not list(fresh_native.iterdir())  # no half-written library


def test_the_switch_keeps_torchs_kernel_without_a_warning(fresh_native, monkeypatch,
                                                          recwarn) -> None:
    monkeypatch.setenv(native.SWITCH, "0")
    grad, x = _case(2, 8, 6, 5, 1, 2, 1, torch.float64)
    assert depthwise_weight_grad(grad, x, 5, 1, 2, 1) is None
    assert native.unavailable_reason("depthwise_weight_grad") == f"{native.SWITCH}=0"
    assert not recwarn.list and not fresh_native.exists()


def test_a_compiled_kernel_is_reused_from_the_cache(fresh_native) -> None:
    fresh_native.mkdir(parents=True)
    (fresh_native / "depthwise_weight_grad-0000000000000000.so").write_bytes(b"an older build")
    (fresh_native / "pooling-0000000000000000.so").write_bytes(b"another kernel's")
    assert native.library("depthwise_weight_grad") is not None
    built, other = sorted(fresh_native.iterdir())  # the older build of the same kernel is gone
    assert built.name.startswith("depthwise_weight_grad-") and other.name.startswith("pooling-")
    stamp = built.stat().st_mtime_ns
    native.forget()
    assert native.library("depthwise_weight_grad") is not None
    assert sorted(fresh_native.iterdir()) == [built, other]
    assert built.stat().st_mtime_ns == stamp


def test_a_cached_library_that_does_not_load_is_built_again(fresh_native) -> None:
    built = native._build("pooling")  # compiled, not loaded: a process loads a path once
    built.write_bytes(b"cut short")
    assert native.library("pooling") is not None
    assert built.stat().st_size > len(b"cut short")


def test_every_kernel_source_ships_with_the_package() -> None:
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["supernets"]
    sources = [p.relative_to(ROOT / "supernets").as_posix()
               for p in (ROOT / "supernets" / "native").glob("*.c")]
    assert sources and all(any(fnmatch.fnmatch(s, g) for g in globs) for s in sources)


def _pool_pair(kind: str, stride: int, count_include_pad: bool = False):
    if kind == "max":
        return MaxPool(3, stride, 1), lambda t: nn.functional.max_pool2d(t, 3, stride, 1)
    return (AvgPool(3, stride, 1, count_include_pad),
            lambda t: nn.functional.avg_pool2d(t, 3, stride, 1, count_include_pad=count_include_pad))


@pytest.mark.parametrize("kind, count_include_pad", [("max", False), ("avg", False), ("avg", True)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [7, 8])
@pytest.mark.parametrize("channels, memory_format", [(8, torch.channels_last),  # the C kernels
                                                     (3, torch.channels_last),  # torch's
                                                     (8, torch.contiguous_format)])
def test_pools_give_torchs_values_and_gradients(kind: str, count_include_pad: bool, stride: int,
                                                size: int, channels: int,
                                                memory_format: torch.memory_format) -> None:
    generator = torch.Generator().manual_seed(size)
    x = torch.randint(0, 3, (2, channels, size, size + 1), generator=generator).double()  # ties
    x = x.contiguous(memory_format=memory_format).requires_grad_()
    pool, reference = _pool_pair(kind, stride, count_include_pad)
    out, expected = pool(x), reference(x)
    upstream = torch.randn(out.shape, dtype=torch.float64, generator=generator)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.autograd.grad(out, x, upstream)[0],
                               torch.autograd.grad(expected, x, upstream)[0], rtol=0, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(pool(x), expected, rtol=0, atol=1e-12)


def test_a_nan_window_passes_its_gradient_where_torchs_does() -> None:
    x = torch.randn(1, 8, 5, 5, dtype=torch.float64)
    x[0, 0, 2, 2] = x[0, 0, 2, 3] = float("nan")
    x[0, 1, 1, 1] = float("nan")
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    out, expected = MaxPool(3, 1, 1)(x), nn.functional.max_pool2d(x, 3, 1, 1)
    assert torch.equal(out.isnan(), expected.isnan()) and out.isnan().any()
    upstream = torch.randn_like(expected)
    torch.testing.assert_close(torch.autograd.grad(out, x, upstream)[0],
                               torch.autograd.grad(expected, x, upstream)[0], rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pools_switched_off_or_without_the_library_run_torchs(kind: str, fresh_native,
                                                              monkeypatch) -> None:
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    pool, reference = _pool_pair(kind, 1)
    use_native_kernels(pool, False)
    assert pool.native is False
    torch.testing.assert_close(pool(x), reference(x))
    use_native_kernels(pool, True)
    monkeypatch.setenv(native.SWITCH, "0")
    assert not native_pooling.applies(x)
    torch.testing.assert_close(pool(x), reference(x))


def test_the_pooling_benchmark_prints_both_pools(capsys) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import pooling_kernels
    pooling_kernels.main(["--batch", "2", "--channels", "8", "--size", "6", "--calls", "1",
                          "--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("pooling, batch 2, 8 channels, 6x6")
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["max 3x3", "average 3x3"]
    assert all(line.count("->") == 2 for line in lines[1:])


def test_a_traced_or_exported_pool_is_torchs_operator() -> None:
    pools = nn.Sequential(MaxPool(3, 1, 1), AvgPool(3, 2, 1, count_include_pad=False)).eval()
    x, other = (torch.randn(2, 8, size, size).contiguous(memory_format=torch.channels_last)
                for size in (8, 6))
    traced = torch.jit.trace(pools, x)
    torch.testing.assert_close(traced(other), pools(other))
    program = torch.export.export(pools, (x,))  # static shapes: checked on another batch
    fresh = torch.randn(x.shape).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(program.module()(fresh), pools(fresh))


KERNEL_PAIRS = [(a, s) for a, s in DECLARED if s in ("darts", "nb201")]


@pytest.mark.parametrize("algorithm, space", KERNEL_PAIRS)
def test_every_algorithm_searches_with_folded_norms_and_the_c_kernels(algorithm: str, space: str,
                                                                     tmp_path, monkeypatch) -> None:
    """8 channels: maps whose channels fill the kernels' vectors (the tiny spaces have 4)."""
    ran = {"folded sums": 0, "C kernels": 0}

    def counting(key: str, function):
        def counted(*args, **kwargs):
            result = function(*args, **kwargs)
            ran[key] += result is not None  # the depthwise kernel answers None where it cannot
            return result
        return counted

    monkeypatch.setattr(mixed, "folded_weighted_sum",
                        counting("folded sums", mixed.folded_weighted_sum))
    for module, name in ((native_pooling, "max_pool"), (native_pooling, "avg_pool"),
                         (depthwise_module, "depthwise_weight_grad")):
        monkeypatch.setattr(module, name, counting("C kernels", getattr(module, name)))
    channels = [o.replace("space.channels=4", "space.channels=8") for o in SPACE_TINY[space]]
    result = train(compose_search(f"run_dir={tmp_path}", f"algorithm={algorithm}", *channels,
                                  *ALGORITHM_TINY.get(algorithm, ()), "trainer.max_epochs=1",
                                  "trainer.limit_train_batches=1", base=NO_SPACE))
    assert ran["folded sums"] > 0 and ran["C kernels"] > 0
    document = load_genotype_file(tmp_path / "genotype.json")
    assert document.meta["algorithm"] == algorithm
    assert get_space(space).genotype_from_dict(document.genotype) == result["genotype"]
