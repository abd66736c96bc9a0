"""The JSON genotype file: atomic save, load, and one-line errors naming the bad field."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from oneshot.storage.files import save_genotype_file
from supernets.darts.genotype import DartsGenotype, load_darts_genotype
from supernets.errors import GenotypeError
from supernets.genotype_file import GenotypeFile, load_genotype_file

GENOTYPE = {"normal": [["sep_conv_3x3", 0], ["skip_connect", 1]], "normal_concat": [2],
            "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]], "reduce_concat": [2]}
META = {"algorithm": "darts", "epoch": 49, "val_acc": 0.88}


def _write(path: Path, document) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _document(**changes) -> dict:
    document = {"format_version": 1, "space": "darts", "genotype": GENOTYPE, "meta": META}
    document.update(changes)
    return document


def test_saved_file_respects_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        save_genotype_file(tmp_path / "g.json", space="darts", genotype=GENOTYPE)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "g.json").stat().st_mode) == 0o644  # readable by all
    assert [path.name for path in tmp_path.iterdir()] == ["g.json"]  # no temporary file left


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "genotype.json"
    save_genotype_file(path, space="darts", genotype=GENOTYPE, meta=META)
    assert json.loads(path.read_text())["format_version"] == 1
    assert load_genotype_file(path) == GenotypeFile(space="darts", genotype=GENOTYPE, meta=META)


def test_save_overwrites_atomically_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "genotype.json"
    save_genotype_file(path, space="darts", genotype=GENOTYPE, meta={"run": 1})
    save_genotype_file(path, space="darts", genotype=GENOTYPE, meta={"run": 2})
    assert load_genotype_file(path).meta == {"run": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["genotype.json"]


def test_unserializable_meta_fails_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "genotype.json"
    save_genotype_file(path, space="darts", genotype=GENOTYPE, meta={"run": 1})
    with pytest.raises(GenotypeError, match="only JSON values"):
        save_genotype_file(path, space="darts", genotype=GENOTYPE, meta={"loss": float("nan")})
    assert load_genotype_file(path).meta == {"run": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["genotype.json"]


def test_save_rejects_an_empty_space(tmp_path: Path) -> None:
    with pytest.raises(GenotypeError, match="space must be a non-empty string"):
        save_genotype_file(tmp_path / "g.json", space="", genotype=GENOTYPE)


def test_save_rejects_a_genotype_object_instead_of_its_dict(tmp_path: Path) -> None:
    genotype = DartsGenotype.from_dict(GENOTYPE)
    with pytest.raises(GenotypeError, match="must be dicts .*got DartsGenotype"):
        save_genotype_file(tmp_path / "g.json", space="darts", genotype=genotype)  # type: ignore


def test_meta_is_optional(tmp_path: Path) -> None:
    document = _document()
    del document["meta"]
    assert load_genotype_file(_write(tmp_path / "g.json", document)).meta == {}


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(GenotypeError, match=r"'.*nope\.json' not found"):
        load_genotype_file(tmp_path / "nope.json")
    with pytest.raises(GenotypeError, match="not found"):
        load_genotype_file(tmp_path)


@pytest.mark.parametrize("content, match", [
    ("{not json", r"is not valid JSON \(line 1 column 2"),
    ("", r"is not valid JSON"),
    ("[1, 2]", r"must hold a JSON object"),
])
def test_invalid_json_is_rejected(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "g.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(GenotypeError, match=match):
        load_genotype_file(path)


def test_non_utf8_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(GenotypeError, match="not UTF-8"):
        load_genotype_file(path)


@pytest.mark.parametrize("field", ["format_version", "space", "genotype"])
def test_missing_field_is_named(tmp_path: Path, field: str) -> None:
    document = _document()
    del document[field]
    with pytest.raises(GenotypeError, match=f"field '{field}' is missing"):
        load_genotype_file(_write(tmp_path / "g.json", document))


@pytest.mark.parametrize("changes, match", [
    ({"format_version": "1"}, r"field 'format_version' must be a JSON integer, got str"),
    ({"format_version": 1.0}, r"field 'format_version' must be a JSON integer, got float"),
    ({"space": 3}, r"field 'space' must be a JSON string"),
    ({"space": ""}, r"field 'space' is empty"),
    ({"genotype": [1]}, r"field 'genotype' must be a JSON object, got list"),
    ({"meta": "x"}, r"field 'meta' must be a JSON object, got str"),
    ({"format_version": 2}, r"format_version 2.*reads format_version 1"),
    ({"format_version": True}, r"format_version True"),
    ({"genotpye": {}}, r"unknown field\(s\) genotpye"),
])
def test_ill_typed_or_unknown_field_is_named(tmp_path: Path, changes: dict, match: str) -> None:
    with pytest.raises(GenotypeError, match=match):
        load_genotype_file(_write(tmp_path / "g.json", _document(**changes)))


def test_darts_helpers_round_trip(tmp_path: Path) -> None:
    genotype = DartsGenotype.from_dict(GENOTYPE)
    path = tmp_path / "g.json"
    save_genotype_file(path, space="darts", genotype=genotype.to_dict(), meta=META)
    assert load_darts_genotype(path) == (genotype, META)


def test_darts_loader_checks_space_and_names_file_and_field(tmp_path: Path) -> None:
    with pytest.raises(GenotypeError, match="for space 'nb201', not 'darts'"):
        load_darts_genotype(_write(tmp_path / "a.json", _document(space="nb201")))
    bad = dict(GENOTYPE, normal=[["sep_conv_3x3", 0], ["skip_connect", 2]])
    with pytest.raises(GenotypeError, match=r"b\.json'.*normal\[1\].*input 2 is out of range"):
        load_darts_genotype(_write(tmp_path / "b.json", _document(genotype=bad)))
