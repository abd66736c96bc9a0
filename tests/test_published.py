"""Published DARTS-space CIFAR-10 genotypes: validity, round trips, lookup and meta."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from oneshot.storage.files import save_genotype_file
from supernets.darts.genotype import DartsGenotype, derive_darts_genotype, load_darts_genotype
from supernets.darts.published import get_published, list_published
from supernets.darts.topology import edge_inputs
from supernets.errors import GenotypeError
from supernets.ops import DARTS_PRIMITIVES

# Cells as printed in the reference repositories' genotypes.py files; GDAS is AutoDL-Projects'
# GDAS_V1 (stored there as node pairs) written in the flat form of the original GDAS code.
REFERENCE_TEXTS = {
    "DARTS_V1": "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])",  # noqa: E501
    "DARTS_V2": "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])",  # noqa: E501
    "PC_DARTS": "PC_DARTS_cifar = Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 0), ('dil_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('avg_pool_3x3', 0), ('dil_conv_3x3', 1)], normal_concat=range(2, 6), reduce=[('sep_conv_5x5', 1), ('max_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_5x5', 2), ('sep_conv_3x3', 0), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2)], reduce_concat=range(2, 6))",  # noqa: E501
    "PDARTS": "PDARTS = Genotype(normal=[('skip_connect', 0), ('dil_conv_3x3', 1), ('skip_connect', 0),('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3',0), ('dil_conv_5x5', 4)], normal_concat=range(2, 6), reduce=[('avg_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('dil_conv_5x5', 2), ('max_pool_3x3', 0), ('dil_conv_3x3', 1), ('dil_conv_3x3', 1), ('dil_conv_5x5', 3)], reduce_concat=range(2, 6))",  # noqa: E501
    "GDAS": """GDAS_V1 = Genotype(
  normal=[('skip_connect', 0), ('skip_connect', 1), ('skip_connect', 0), ('sep_conv_5x5', 2),
          ('sep_conv_3x3', 3), ('skip_connect', 0), ('sep_conv_5x5', 4), ('sep_conv_3x3', 3)],
  normal_concat=range(2, 6),
  reduce=[('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('sep_conv_5x5', 2), ('sep_conv_5x5', 1),
          ('dil_conv_5x5', 2), ('sep_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_5x5', 1)],
  reduce_concat=range(2, 6)
)""",
}


def test_list_published_names() -> None:
    assert list_published() == ["DARTS_V1", "DARTS_V2", "PC_DARTS", "PDARTS", "GDAS"]


@pytest.mark.parametrize("name", list(REFERENCE_TEXTS))
def test_published_cell_matches_the_reference_repository(name: str) -> None:
    genotype, _ = get_published(name)
    assert genotype == DartsGenotype.from_text(REFERENCE_TEXTS[name])


@pytest.mark.parametrize("name", list(REFERENCE_TEXTS))
def test_published_genotype_round_trips(name: str, tmp_path: Path) -> None:
    genotype, meta = get_published(name)
    assert genotype.steps == 4
    assert DartsGenotype.from_dict(genotype.to_dict()) == genotype
    assert DartsGenotype.from_text(genotype.to_text()) == genotype
    save_genotype_file(tmp_path / "g.json", space="darts", genotype=genotype.to_dict(), meta=meta)
    assert load_darts_genotype(tmp_path / "g.json") == (genotype, meta)


@pytest.mark.parametrize("name", list(REFERENCE_TEXTS))
def test_published_meta_reports_the_paper_numbers(name: str) -> None:
    _, meta = get_published(name)
    assert meta["name"] == name and meta["dataset"] == "cifar10"
    assert 2.0 < meta["cifar10_test_error"] < 3.5
    assert 2.5 < meta["params_m"] < 4.0
    assert 0 < meta["search_cost_gpu_days"] <= 1.0
    assert re.fullmatch(r"\d{4}\.\d{5}", meta["arxiv"])
    assert meta["repository"].startswith("https://github.com/") and meta["paper"]


def test_reported_numbers_of_darts_v2() -> None:
    _, meta = get_published("DARTS_V2")
    reported = (meta["cifar10_test_error"], meta["cifar10_test_error_std"], meta["params_m"])
    assert reported == (2.76, 0.09, 3.3)


@pytest.mark.parametrize("alias, name", [
    ("pc-darts", "PC_DARTS"), ("PC_DARTS", "PC_DARTS"), ("pcdarts", "PC_DARTS"),
    ("P-DARTS", "PDARTS"),
    ("darts_v1", "DARTS_V1"), ("DARTS", "DARTS_V2"), ("gdas_v1", "GDAS"),
])
def test_lookup_is_case_and_separator_insensitive(alias: str, name: str) -> None:
    assert get_published(alias) == get_published(name)


def test_unknown_name_lists_the_known_ones() -> None:
    expected = r"unknown published genotype 'enas'; choose one of: DARTS_V1, DARTS_V2,"
    with pytest.raises(GenotypeError, match=expected):
        get_published("enas")


def test_returned_meta_is_a_copy() -> None:
    get_published("GDAS")[1]["params_m"] = 0
    assert get_published("GDAS")[1]["params_m"] == 3.4


def _weights_choosing(genotype: DartsGenotype) -> dict[str, torch.Tensor]:
    """Softmax-like rows under which the DARTS rule picks ``genotype`` back, strongest first."""
    weights = {}
    for cell_type, cell in (("normal", genotype.normal), ("reduce", genotype.reduce)):
        for k, (node, j) in enumerate(edge_inputs(genotype.steps)):
            row = torch.full((len(DARTS_PRIMITIVES),), 0.01)
            row[0] = 0.9  # 'none' is the largest everywhere and must be ignored
            for rank, (op, source) in enumerate(cell[2 * node: 2 * node + 2]):
                if source == j:
                    row[DARTS_PRIMITIVES.index(op)] = 0.5 - 0.1 * rank
            weights[f"{cell_type}/edge_{k}"] = row
    return weights


@pytest.mark.parametrize("name", list(REFERENCE_TEXTS))
def test_derive_recovers_each_published_genotype(name: str) -> None:
    genotype, _ = get_published(name)
    assert derive_darts_genotype(_weights_choosing(genotype), DARTS_PRIMITIVES) == genotype
