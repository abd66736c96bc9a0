"""``check_space``: what every search space must do, checked on a space a user writes.

It builds the supernet, runs it with a dense and a sampled architecture (and backpropagates to
the architecture weights), derives a genotype and round-trips it through its JSON and text
forms, builds the network the genotype is retrained as and runs it, and round-trips the
supernet's weights through a ``weights_only`` checkpoint. The first failure is a one-line
:class:`~supernets.errors.SpaceError` naming the step.
"""

from __future__ import annotations

import io
from typing import Any, Mapping, Sequence

import torch

from supernets.decisions import flat_decisions
from supernets.errors import GenotypeError, SpaceError
from supernets.spaces import create_network, get_space, space_name
from supernets.supernet import Supernet


def check_space(space: str | type[Supernet], *, options: Mapping[str, Any] | None = None,
                network_options: Mapping[str, Any] | None = None,
                input_size: Sequence[int] = (2, 3, 16, 16), num_classes: int = 10,
                seed: int = 0) -> Any:
    """Check the space ``space`` (a name, class path or :class:`Supernet` subclass); returns the
    derived genotype. ``options`` are the supernet's, ``network_options`` the retrained
    network's (e.g. small sizes for DARTS' evaluation network)."""
    spec = get_space(space)
    name = space_name(spec.supernet)
    torch.manual_seed(seed)
    supernet = _step("build the supernet", lambda: spec.supernet(num_classes=num_classes,
                                                                 **dict(options or {})))
    points = _step("list the choice points", supernet.choice_points)
    if not points:
        raise SpaceError(f"check_space({name}): the space has no choices; add an OpChoice or "
                         "an InputChoice")
    x = torch.randn(*input_size)
    alphas = {label: torch.zeros(len(names), requires_grad=True) for label, names in points.items()}
    dense = {label: torch.softmax(alpha, -1) for label, alpha in alphas.items()}
    out = _step("run a dense architecture", lambda: supernet(x, dense))
    if out.shape != (input_size[0], num_classes):
        raise SpaceError(f"check_space({name}): the supernet returned shape {tuple(out.shape)}, "
                         f"expected {(input_size[0], num_classes)} (batch, classes)")
    _step("backpropagate to the architecture", lambda: out.square().mean().backward())
    if not any(alpha.grad is not None and alpha.grad.abs().sum() > 0 for alpha in alphas.values()):
        raise SpaceError(f"check_space({name}): no architecture weight got a gradient; "
                         "the choices' outputs must reach the logits")
    decisions = supernet.sampling_decisions()
    first = {d.label: 0 for d in flat_decisions(decisions)}
    _step("run a sampled architecture", lambda: supernet(x, supernet.sampled_arch(first)))
    genotype = _step("derive a genotype", lambda: supernet.derive(dense))
    again = _step("read the genotype's JSON form",
                  lambda: spec.genotype_from_dict(genotype.to_dict()))
    if again != genotype:
        raise SpaceError(f"check_space({name}): the genotype's JSON form reads back as {again}, "
                         f"not {genotype}")
    if spec.genotype_from_text is not None:
        text = _step("read the genotype's text form",
                     lambda: spec.genotype_from_text(genotype.to_text()))
        if text != genotype:
            raise SpaceError(f"check_space({name}): the genotype's text form reads back as {text}")
    network = _step("build the retrained network", lambda: create_network(
        spec.supernet, genotype, num_classes=num_classes, space_options=options,
        **dict(network_options or {})))
    logits, _ = _step("run the retrained network", lambda: network.eval()(x))
    if logits.shape != (input_size[0], num_classes):
        raise SpaceError(f"check_space({name}): the retrained network returned shape "
                         f"{tuple(logits.shape)}, expected {(input_size[0], num_classes)}")
    _check_checkpoint(name, spec.supernet, supernet, options, num_classes, x, dense)
    return genotype


def _check_checkpoint(name: str, cls: type[Supernet], supernet: Supernet,
                      options: Mapping[str, Any] | None, num_classes: int, x: torch.Tensor,
                      arch: Mapping[str, torch.Tensor]) -> None:
    buffer = io.BytesIO()
    torch.save(supernet.state_dict(), buffer)
    buffer.seek(0)
    fresh = cls(num_classes=num_classes, **dict(options or {}))
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        same = torch.allclose(supernet.eval()(x, arch), fresh.eval()(x, arch))
    if not same:
        raise SpaceError(f"check_space({name}): a supernet loaded from a checkpoint computes "
                         "something else; keep every state in parameters or buffers")


def _step(what: str, run: Any) -> Any:
    try:
        return run()
    except (SpaceError, GenotypeError, TypeError, RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SpaceError(f"check_space: cannot {what}: {first}") from err
