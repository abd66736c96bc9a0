"""What a search step stores: max pooling without indices, the architecture step's weights as
constants. Same values and gradients as before, fewer saved bytes."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from oneshot.search.algorithms import algorithm_space_options, create_algorithm, supported_spaces
from oneshot.search.architecture import weights_as_constants
from oneshot.training.datamodules import SearchDataModule
from supernets.maxpool import MaxPool
from supernets.spaces import create_supernet, get_space
from tasks import load_task


def saved_tensors(fn):
    """``fn()``'s result and the tensors its autograd graph saved (one entry per storage)."""
    saved = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, list(saved.values())


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("channels", [3, 4])  # 4 channels-last doubles: the C kernels
def test_max_pool_matches_torch_with_ties_and_stores_no_indices(stride, channels_last, channels):
    generator = torch.Generator().manual_seed(stride)
    x = torch.randint(0, 3, (2, channels, 7, 7), generator=generator).double()  # many ties
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad_out = torch.randn(2, channels, 4 if stride == 2 else 7, 4 if stride == 2 else 7,
                           generator=generator, dtype=torch.double)
    ours_in, torch_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, saved = saved_tensors(lambda: MaxPool(3, stride, 1)(ours_in))
    reference = nn.MaxPool2d(3, stride=stride, padding=1)(torch_in)
    ours.backward(grad_out)
    reference.backward(grad_out)
    assert torch.equal(ours, reference)
    assert torch.equal(ours_in.grad, torch_in.grad)
    # the input and the output (which the BatchNorm after it keeps anyway), no int64 indices
    assert [t.dtype for t in saved] == [torch.double] * 2
    assert saved[1].data_ptr() == ours.data_ptr()


def test_max_pool_gradient_matches_finite_differences():
    x = torch.randn(1, 2, 5, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: MaxPool(3, 2, 1)(t), (x,))


def _darts_net():
    torch.manual_seed(0)
    net = create_supernet("darts", num_classes=10, channels=4, layers=3)
    alphas = {label: torch.randn(len(names), requires_grad=True)
              for label, names in net.choice_points().items()}
    return net, alphas


def test_architecture_step_with_constant_weights_same_alpha_gradient_less_stored():
    net, alphas = _darts_net()
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])

    def alpha_grads():
        loss, saved = saved_tensors(lambda: nn.functional.cross_entropy(
            net(x, {k: torch.softmax(a, 0) for k, a in alphas.items()}), y))
        return torch.autograd.grad(loss, list(alphas.values())), sum(
            t.untyped_storage().nbytes() for t in saved)

    plain, plain_bytes = alpha_grads()
    with weights_as_constants(net):
        constant, constant_bytes = alpha_grads()
    for a, b in zip(plain, constant):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert constant_bytes < 0.9 * plain_bytes
    assert all(p.requires_grad for p in net.parameters())


def test_weights_as_constants_restores_trainable_weights_after_an_error():
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    net[0].weight.requires_grad_(False)  # frozen before: stays frozen
    with pytest.raises(RuntimeError, match="inside"):
        with weights_as_constants(net):
            assert not any(p.requires_grad for p in net.parameters())
            raise RuntimeError("inside")
    assert [p.requires_grad for p in net.parameters()] == [False, True, True, True]


WEIGHTS_AS_CONSTANTS = ("darts", "pcdarts", "gdas", "snas", "drnas", "proxyless")
SPACE_SIZES = {"darts": {"channels": 4, "layers": 3}, "nb201": {"channels": 4, "layers": 1},
               "proxyless": {"stem_channels": 4, "first_channels": 4, "widths": [4, 8],
                             "depths": [1, 1], "strides": [1, 2], "head_channels": 8}}


@pytest.mark.parametrize("algorithm, space", [(a, s) for a in WEIGHTS_AS_CONSTANTS
                                              for s in supported_spaces(a)])
def test_architecture_steps_run_with_the_weights_as_constants(tmp_path, algorithm, space):
    """Per step: one forward with the weights constant (the architecture step) and one with
    them trainable (the weight step); the alphas move and the weights train."""
    cfg = {"warmup_epochs": 0} if algorithm == "pcdarts" else {}
    extra = algorithm_space_options(algorithm, get_space(space).supernet, cfg)
    torch.manual_seed(0)
    net = create_supernet(space, num_classes=10, **SPACE_SIZES[space], **extra)
    module = create_algorithm(algorithm, net, num_classes=10, cfg=cfg)
    seen: list[bool] = []
    net.register_forward_pre_hook(
        lambda *_: seen.append(any(p.requires_grad for p in net.parameters())))
    alphas = [a.detach().clone() for a in module.arch.parameters_list()]
    weights = [p.detach().clone() for p in net.parameters()]
    data = SearchDataModule(load_task("synthetic", num_train=32, num_test=8, image_size=16),
                            batch_size=8, seed=0, eval_batch_size=8)
    pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, accelerator="cpu",
               logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, default_root_dir=tmp_path).fit(module, data)
    assert seen.count(False) == 2 and seen.count(True) >= 2
    assert all(p.requires_grad for p in net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(alphas, module.arch.parameters_list()))
    assert any(not torch.equal(a, b) for a, b in zip(weights, net.parameters()))
