"""DartsGenotype: dict and text forms, validation, and the DARTS derive rule."""

from __future__ import annotations

import json
import os

import pytest
import torch

from supernets.darts.genotype import DartsGenotype, derive_darts_genotype
from supernets.darts.topology import edge_inputs
from supernets.errors import GenotypeError, SpaceError
from supernets.ops import DARTS_PRIMITIVES

# DARTS_V2 exactly as printed in the DARTS reference genotypes.py (quark0/darts, cnn/genotypes.py).
DARTS_V2_TEXT = "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"  # noqa: E501


def _valid() -> dict:
    return DartsGenotype.from_text(DARTS_V2_TEXT).to_dict()


def test_reference_text_parses_and_prints_back_identically() -> None:
    genotype = DartsGenotype.from_text(DARTS_V2_TEXT)
    assert genotype.normal[:2] == (("sep_conv_3x3", 0), ("sep_conv_3x3", 1))
    assert genotype.normal[7] == ("dil_conv_3x3", 2)
    assert genotype.reduce_concat == (2, 3, 4, 5)
    assert genotype.steps == 4
    assert genotype.to_text() == DARTS_V2_TEXT
    assert str(genotype) == DARTS_V2_TEXT


def test_text_variants_parse_to_the_same_genotype() -> None:
    expected = DartsGenotype.from_text(DARTS_V2_TEXT)
    body = DARTS_V2_TEXT[len("Genotype"):]
    multiline = DARTS_V2_TEXT.replace(", (", ",\n    (").replace("], ", "],\n  ")
    variants = [f"  DARTS_V2 = {DARTS_V2_TEXT}\n", body, body[1:-1], f"\n{multiline}\n",
                DARTS_V2_TEXT.replace("[2, 3, 4, 5]", "range(2, 6)")]
    assert all(DartsGenotype.from_text(text) == expected for text in variants)


def test_dict_round_trip_through_json() -> None:
    genotype = DartsGenotype.from_text(DARTS_V2_TEXT)
    restored = DartsGenotype.from_dict(json.loads(json.dumps(genotype.to_dict())))
    assert restored == genotype
    assert hash(restored) == hash(genotype)


def test_text_round_trip() -> None:
    genotype = DartsGenotype.from_dict(_valid())
    assert DartsGenotype.from_text(genotype.to_text()) == genotype


def test_constructor_normalizes_lists_and_ranges_to_tuples() -> None:
    data = _valid()
    genotype = DartsGenotype(normal=[tuple(e) for e in data["normal"]], normal_concat=range(2, 6),
                             reduce=data["reduce"], reduce_concat=[2, 3, 4, 5])
    assert genotype.normal_concat == (2, 3, 4, 5)
    assert isinstance(genotype.reduce[0], tuple)
    assert genotype == DartsGenotype.from_dict(data)


def _with(field: str, value) -> dict:
    data = _valid()
    data[field] = value
    return data


def _with_entry(field: str, index: int, entry) -> dict:
    data = _valid()
    data[field][index] = entry
    return data


@pytest.mark.parametrize("data, match", [
    (_with_entry("normal", 3, ["conv_9x9", 1]), r"normal\[3\].*'conv_9x9' is not a DARTS op"),
    (_with_entry("reduce", 0, ["none", 0]), r"reduce\[0\].*'none'"),
    (_with_entry("normal", 0, ["sep_conv_3x3", 2]), r"normal\[0\].*input 2 .*for node 0"),
    (_with_entry("reduce", 7, ["skip_connect", 5]), r"reduce\[7\].*input 5 .*for node 3"),
    (_with_entry("normal", 2, ["skip_connect", -1]), r"normal\[2\].*input -1"),
    (_with_entry("normal", 2, ["skip_connect", True]), r"normal\[2\].*integer"),
    (_with_entry("normal", 2, ["skip_connect", 1, 0.5]), r"normal\[2\].*\(op, input\) pair"),
    (_with("normal", _valid()["normal"][:7]), r"'normal' has 7 entries"),
    (_with("reduce", []), r"'reduce' has 0 entries"),
    (_with("reduce", _valid()["reduce"][:6]), r"'normal' and 'reduce' have 4 and 3 nodes"),
    (_with("normal", "sep_conv_3x3"), r"'normal' must be a list"),
    (_with("normal_concat", [2, 3, 4, 6]), r"'normal_concat'.*index 6 is out of range"),
    (_with("reduce_concat", [1, 2]), r"'reduce_concat'.*index 1 is out of range"),
    (_with("reduce_concat", [2, 2]), r"'reduce_concat'.*appears twice"),
    (_with("normal_concat", []), r"'normal_concat' is empty"),
    (_with("normal_concat", 5), r"'normal_concat' must be a list"),
    ({k: v for k, v in _valid().items() if k != "reduce"}, r"'reduce' is missing"),
    ({**_valid(), "notes": "x"}, r"unknown genotype field\(s\) notes"),
    ([1, 2], r"must be an object"),
])
def test_malformed_dict_is_rejected_naming_the_field(data, match: str) -> None:
    with pytest.raises(GenotypeError, match=match):
        DartsGenotype.from_dict(data)


@pytest.mark.parametrize("text, match", [
    ("Genotype(normal=[('sep_conv_3x3', 0)", r"not in the DARTS form"),
    ("Foo(normal=[])", r"must be a Genotype\(...\)"),
    ("Genotype([], [2], [], [2])", r"must be a Genotype\(...\) of keyword fields"),
    (DARTS_V2_TEXT.replace("normal_concat=", "concat="), r"unknown field 'concat'"),
    (DARTS_V2_TEXT.replace("reduce_concat=[2, 3, 4, 5]", "normal_concat=[2, 3, 4, 5]"),
     r"'normal_concat' twice"),
    (DARTS_V2_TEXT.replace("[2, 3, 4, 5]", "range(2, 6.0)"), r"'normal_concat'.*range"),
    (DARTS_V2_TEXT.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"), r"normal\[7\].*input 5"),
    (DARTS_V2_TEXT.replace("reduce_concat=[2, 3, 4, 5]", ""), r"'reduce_concat' is missing"),
])
def test_malformed_text_is_rejected(text: str, match: str) -> None:
    with pytest.raises(GenotypeError, match=match):
        DartsGenotype.from_text(text)


@pytest.mark.parametrize("payload", [
    "__import__('os').system('x')",
    "Genotype(normal=__import__('os').system('x'), normal_concat=[2], reduce=[])",
    DARTS_V2_TEXT.replace("[2, 3, 4, 5]", "range(2, __import__('os').system('x'))"),
    "[c for c in ().__class__.__base__.__subclasses__()]",
])
def test_code_in_text_is_rejected_without_running(payload: str, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(os, "system", lambda command: calls.append(command))
    with pytest.raises(GenotypeError):
        DartsGenotype.from_text(payload)
    assert calls == []


def test_non_string_text_is_rejected() -> None:
    with pytest.raises(GenotypeError, match="must be a string"):
        DartsGenotype.from_text(b"Genotype()")  # type: ignore[arg-type]


def _row(default: float = 0.01, **ops: float) -> torch.Tensor:
    return torch.tensor([ops.get(name, default) for name in DARTS_PRIMITIVES])


def _uniform_weights(steps: int = 4) -> dict[str, torch.Tensor]:
    return {f"{cell}/edge_{k}": _row(0.125) for cell in ("normal", "reduce")
            for k in range(len(edge_inputs(steps)))}


def test_derive_known_answer_ignores_none_and_breaks_ties_by_lower_index() -> None:
    weights = _uniform_weights()
    normal = {
        0: _row(none=0.9, sep_conv_3x3=0.05, skip_connect=0.04),   # node 0, input 0
        1: _row(dil_conv_5x5=0.5),                                   # node 0, input 1
        2: _row(none=0.95, max_pool_3x3=0.03),                       # node 1, input 0: 'none' only
        3: _row(dil_conv_3x3=0.3),                                   # node 1, input 1
        4: _row(sep_conv_5x5=0.2),                                   # node 1, input 2
        5: _row(avg_pool_3x3=0.3, skip_connect=0.3),                 # node 2: four equal edges
        6: _row(avg_pool_3x3=0.3, skip_connect=0.3),
        7: _row(avg_pool_3x3=0.3, skip_connect=0.3),
        8: _row(avg_pool_3x3=0.3, skip_connect=0.3),
        9: _row(max_pool_3x3=0.1),                                   # node 3, inputs 0..4
        10: _row(max_pool_3x3=0.1),
        11: _row(sep_conv_3x3=0.4),
        12: _row(max_pool_3x3=0.1),
        13: _row(skip_connect=0.5),
    }
    weights.update({f"normal/edge_{k}": row for k, row in normal.items()})
    genotype = derive_darts_genotype(weights, DARTS_PRIMITIVES)
    assert genotype.normal == (
        ("dil_conv_5x5", 1), ("sep_conv_3x3", 0),
        ("dil_conv_3x3", 1), ("sep_conv_5x5", 2),
        ("avg_pool_3x3", 0), ("avg_pool_3x3", 1),
        ("skip_connect", 4), ("sep_conv_3x3", 2),
    )
    assert genotype.reduce == (("max_pool_3x3", 0), ("max_pool_3x3", 1)) * 4
    assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)


def test_derive_uses_the_given_candidate_order_and_steps() -> None:
    candidates = ["skip_connect", "none", "sep_conv_3x3"]
    weights = {f"{cell}/edge_{k}": torch.tensor([0.2, 0.5, 0.3]) for cell in ("normal", "reduce")
               for k in range(len(edge_inputs(2)))}
    weights["normal/edge_4"] = torch.tensor([0.1, 0.1, 0.8])
    genotype = derive_darts_genotype(weights, candidates, steps=2)
    assert genotype.normal == (("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
                               ("sep_conv_3x3", 2), ("sep_conv_3x3", 0))
    assert genotype.normal_concat == (2, 3)


def test_derive_accepts_rows_that_require_grad() -> None:
    weights = {label: torch.softmax(torch.randn(8, requires_grad=True), 0)
               for label in _uniform_weights()}
    assert derive_darts_genotype(weights, DARTS_PRIMITIVES).steps == 4


@pytest.mark.parametrize("change, candidates, match", [
    (lambda w: w.pop("reduce/edge_13"), DARTS_PRIMITIVES, r"no row 'reduce/edge_13'"),
    (lambda w: w.update({"normal/edge_2": torch.ones(7)}), DARTS_PRIMITIVES,
     r"'normal/edge_2' must be a 1-D row of 8"),
    (lambda w: w.update({"normal/edge_0": _row(sep_conv_3x3=float("nan"))}), DARTS_PRIMITIVES,
     r"'normal/edge_0' contain NaN"),
    (lambda w: None, ["none", "conv_9x9"], r"unknown DARTS candidate"),
    (lambda w: None, ["none"], r"besides 'none'"),
])
def test_derive_rejects_bad_weights_and_candidates(change, candidates, match: str) -> None:
    weights = _uniform_weights()
    change(weights)
    with pytest.raises(SpaceError, match=match):
        derive_darts_genotype(weights, candidates)
