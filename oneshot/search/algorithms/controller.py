"""The ENAS controller: an LSTM that emits a search space's decisions one after another.

It follows Pham et al. (2018): every decision is one LSTM step whose output gives logits, which
are divided by ``temperature`` and squashed to ``tanh_constant * tanh(.)`` before the softmax.
A :class:`~supernets.decisions.Choice` takes logits from a linear head over its candidates and
feeds the chosen candidate's embedding to the next step; heads and embeddings are shared by
decisions with the same candidates. A :class:`~supernets.decisions.CellChoices` is sampled as in
ENAS's micro search: two steps give its input states, each node picks inputs by attention over
the states so far (the picked state's vector is the next input), then operations, then one more
step whose output becomes the node's state. The LSTM state carries over from one decision to
the next across the whole architecture.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch
from torch import nn

from supernets.decisions import CellChoices, Decision, flat_decisions
from supernets.errors import SpaceError

Pick = Callable[[str, torch.Tensor], torch.Tensor]


class SampledArchitecture(NamedTuple):
    """One architecture with its (differentiable) log-probability and entropy under the policy.

    ``choices`` maps each decision label to the chosen index; ``probs`` holds each decision's
    probabilities over its candidates (detached), conditioned on the earlier choices.
    """

    choices: dict[str, int]
    log_prob: torch.Tensor
    entropy: torch.Tensor
    probs: dict[str, torch.Tensor]


class Controller(nn.Module):
    """The policy over the architectures that ``decisions`` describe."""

    def __init__(self, decisions: Sequence[Decision], *, hidden_size: int,
                 temperature: float | None, tanh_constant: float | None,
                 init_range: float = 0.1) -> None:
        super().__init__()
        if not decisions:
            raise SpaceError("the controller needs at least one decision; "
                             "the search space has none")
        for name, value in (("temperature", temperature), ("tanh_constant", tanh_constant)):
            if value is not None and not value > 0:
                raise SpaceError(f"controller {name} must be positive (or null for none), "
                                 f"got {value}")
        self.decisions = list(decisions)
        self.labels = {choice.label: choice.candidates for choice in flat_decisions(self.decisions)}
        self.temperature = temperature
        self.tanh_constant = tanh_constant
        vocabularies = list(dict.fromkeys(
            d.ops if isinstance(d, CellChoices) else d.candidates for d in self.decisions))
        self.vocabulary = {names: i for i, names in enumerate(vocabularies)}
        self.lstm = nn.LSTMCell(hidden_size, hidden_size)
        self.start = nn.Parameter(torch.empty(1, hidden_size))
        self.heads = nn.ModuleList(nn.Linear(hidden_size, len(v)) for v in vocabularies)
        self.embeddings = nn.ModuleList(nn.Embedding(len(v), hidden_size) for v in vocabularies)
        if any(isinstance(d, CellChoices) for d in self.decisions):
            self.attn_state = nn.Linear(hidden_size, hidden_size, bias=False)
            self.attn_query = nn.Linear(hidden_size, hidden_size, bias=False)
            self.attn_score = nn.Linear(hidden_size, 1, bias=False)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -init_range, init_range)

    @property
    def num_decisions(self) -> int:
        """How many categorical decisions one architecture takes."""
        return len(self.labels)

    def sample(self, generator: torch.Generator) -> SampledArchitecture:
        """Draw an architecture; the randomness comes from ``generator`` (on the CPU) alone.

        One uniform number per decision is drawn up front and mapped through the inverse CDF,
        so equal generator states give equal architectures on every device and process.
        """
        uniforms = iter(torch.rand(self.num_decisions, generator=generator,
                                   dtype=torch.float64).to(self.start.device))

        def pick(label: str, probs: torch.Tensor) -> torch.Tensor:
            below = torch.cumsum(probs.double(), 0) < next(uniforms)
            return below.sum().clamp(max=probs.numel() - 1)

        return self._rollout(pick)

    def greedy(self) -> SampledArchitecture:
        """The architecture of the most likely candidate at every decision."""
        return self._rollout(lambda label, probs: probs.argmax())

    def evaluate(self, choices: dict[str, int]) -> SampledArchitecture:
        """Log-probability and entropy of given ``choices`` (each decision's index)."""
        missing = [label for label in self.labels if label not in choices]
        if missing:
            raise SpaceError(f"the architecture has no decision '{missing[0]}'; "
                             "pass a sample of this controller's search space")

        def pick(label: str, probs: torch.Tensor) -> torch.Tensor:
            index = choices[label]
            if not 0 <= index < probs.numel():
                raise SpaceError(f"decision '{label}' must be an index in 0..{probs.numel() - 1}, "
                                 f"got {index}")
            return torch.tensor(index, device=probs.device)

        return self._rollout(pick)

    def _rollout(self, pick: Pick) -> SampledArchitecture:
        rollout = _Rollout(self, pick)
        x = self.start
        for decision in self.decisions:
            if isinstance(decision, CellChoices):
                rollout.cell(decision)
                x = self.start
            else:
                x = rollout.choice(x, decision.label, decision.candidates)
        return rollout.result()

    def shape_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Apply the sampling temperature, then the tanh constant."""
        if self.temperature is not None:
            logits = logits / self.temperature
        if self.tanh_constant is not None:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits


class _Rollout:
    """One pass of the controller over the decisions, recording what ``pick`` chose."""

    def __init__(self, controller: Controller, pick: Pick) -> None:
        self.net = controller
        self.pick = pick
        zeros = controller.start.new_zeros(controller.start.shape)
        self.state = (zeros, zeros)
        self.picked: list[tuple[str, torch.Tensor]] = []
        self.log_probs: list[torch.Tensor] = []
        self.entropies: list[torch.Tensor] = []
        self.probs: dict[str, torch.Tensor] = {}

    def result(self) -> SampledArchitecture:
        indices = torch.stack([index for _, index in self.picked]).tolist()
        choices = {label: index for (label, _), index in zip(self.picked, indices)}
        return SampledArchitecture(choices, torch.stack(self.log_probs).sum(),
                                   torch.stack(self.entropies).sum(), self.probs)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        self.state = self.net.lstm(x, self.state)
        return self.state[0]

    def decide(self, label: str, logits: torch.Tensor) -> torch.Tensor:
        log_probs = torch.log_softmax(self.net.shape_logits(logits), dim=-1)
        probs = log_probs.exp()
        index = self.pick(label, probs.detach())
        self.picked.append((label, index))
        self.log_probs.append(log_probs[index])
        self.entropies.append(-(probs * log_probs).sum())
        self.probs[label] = probs.detach()
        return index

    def choice(self, x: torch.Tensor, label: str, candidates: tuple[str, ...]) -> torch.Tensor:
        """One categorical decision; returns the next LSTM input (the choice's embedding)."""
        vocabulary = self.net.vocabulary[candidates]
        index = self.decide(label, self.net.heads[vocabulary](self.step(x))[0])
        return self.net.embeddings[vocabulary](index).view(1, -1)

    def cell(self, cell: CellChoices) -> None:
        """ENAS micro sampling of one cell; its input states are represented by zero vectors."""
        net = self.net
        states, keys = [], []
        for _ in range(cell.num_inputs):
            h = self.step(net.start)
            states.append(torch.zeros_like(h))
            keys.append(net.attn_state(h))
        for node in range(cell.steps):
            x = net.start
            for k in range(cell.inputs_per_node):
                query = net.attn_query(self.step(x))
                scores = net.attn_score(torch.tanh(torch.cat(keys) + query)).view(-1)
                index = self.decide(cell.input_label(node, k), scores)
                x = torch.cat(states)[index].view(1, -1)
            for k in range(cell.inputs_per_node):
                x = self.choice(x, cell.op_label(node, k), cell.ops)
            h = self.step(x)
            states.append(h)
            keys.append(net.attn_state(h))
