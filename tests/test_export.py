"""``python -m oneshot.export``: JSON and DARTS text of run dirs, checkpoints, published cells."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from oneshot.export import main
from oneshot.storage.genotypes import load_genotype
from supernets.errors import GenotypeError
from supernets.darts.genotype import DartsGenotype
from supernets.darts.published import get_published
from supernets.genotype_file import load_genotype_file


def _export(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _json_and_text(out: str) -> tuple[dict, DartsGenotype]:
    """The default output: the JSON document, then the DARTS text on the last line."""
    *json_lines, text = out.strip().splitlines()
    return json.loads("\n".join(json_lines)), DartsGenotype.from_text(text)


@pytest.fixture(scope="module")
def final(search_run) -> DartsGenotype:
    document = load_genotype_file(search_run["run_dir"] / "genotype.json")
    return DartsGenotype.from_dict(document.genotype)


def test_run_dir_prints_json_then_darts_text(search_run, final, capsys) -> None:
    code, out, err = _export(capsys, search_run["run_dir"])
    assert (code, err) == (0, "")
    document, text_genotype = _json_and_text(out)
    assert document["space"] == "darts"
    assert DartsGenotype.from_dict(document["genotype"]) == final == text_genotype
    assert document["meta"]["task"] == "synthetic" and document["meta"]["epoch"] == 1


def test_checkpoint_gives_the_same_genotype(search_run, final, capsys) -> None:
    code, out, _ = _export(capsys, search_run["run_dir"] / "checkpoints" / "last.ckpt")
    assert code == 0
    document, text_genotype = _json_and_text(out)
    assert text_genotype == final
    assert document["meta"]["seed"] == 0 and document["meta"]["algorithm"] == "darts"


def test_epoch_file_with_format_json(search_run, capsys) -> None:
    path = search_run["run_dir"] / "genotypes" / "epoch_000.json"
    code, out, _ = _export(capsys, path, "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert document["genotype"] == load_genotype_file(path).genotype
    assert document["meta"]["epoch"] == 0


def test_printed_json_is_the_genotype_file_and_loads_back(search_run, tmp_path, capsys) -> None:
    path = search_run["run_dir"] / "genotypes" / "epoch_000.json"
    code, out, _ = _export(capsys, path, "--format", "json")
    assert code == 0 and out == path.read_text(encoding="utf-8")  # byte for byte, as `> g.json`
    code, out, _ = _export(capsys, "DARTS_V2", "--format", "json")
    printed = tmp_path / "g.json"
    printed.write_text(out, encoding="utf-8")
    assert code == 0 and json.loads(out)["format_version"] == 1
    assert load_genotype_file(printed).genotype == get_published("DARTS_V2")[0].to_dict()
    loaded = load_genotype(printed)  # what `oneshot.retrain genotype=g.json` reads
    assert loaded.space == "darts" and loaded.genotype == get_published("DARTS_V2")[0]


def test_published_name_with_format_darts(capsys) -> None:
    code, out, _ = _export(capsys, "DARTS_V2", "--format", "darts")
    assert code == 0
    assert DartsGenotype.from_text(out.strip()) == get_published("DARTS_V2")[0]
    assert len(out.strip().splitlines()) == 1


def test_darts_text_file_round_trips(tmp_path, capsys) -> None:
    genotype = get_published("PC_DARTS")[0]
    path = tmp_path / "cell.txt"
    path.write_text(f"PC_DARTS = {genotype.to_text()}\n")
    code, out, _ = _export(capsys, path, "--format", "darts", "--format", "json")
    assert code == 0
    text, *json_lines = out.strip().splitlines()
    assert DartsGenotype.from_text(text) == genotype
    assert json.loads("\n".join(json_lines))["genotype"] == genotype.to_dict()


@pytest.mark.parametrize("source, start", [
    ("NO_SUCH_CELL",
     "error: no genotype at 'NO_SUCH_CELL': not a file or run dir, a genotype's text form, nor a published"),
    ("{empty_dir}",
     "error: run dir '{empty_dir}' has neither genotype.json nor checkpoints/last.ckpt"),
])
def test_bad_source_is_one_line_exit_2(source: str, start: str, tmp_path, capsys) -> None:
    source, start = (s.replace("{empty_dir}", str(tmp_path)) for s in (source, start))
    code, out, err = _export(capsys, source)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith(start)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_checkpoint_is_one_line_exit_2(damage: str, search_run, tmp_path, capsys) -> None:
    data = (search_run["run_dir"] / "checkpoints" / "last.ckpt").read_bytes()
    path = tmp_path / "broken.ckpt"
    path.write_bytes({"truncated": data[: len(data) // 2],
                      "garbage": b"\x80\x02not a checkpoint" * 50, "empty": b""}[damage])
    code, out, err = _export(capsys, path)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith(f"error: cannot read checkpoint '{path}'")


def test_checkpoint_without_search_record(tmp_path, capsys) -> None:
    import torch

    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    code, _, err = _export(capsys, path)
    assert code == 2 and err.count("\n") == 1 and "holds no oneshot search state" in err


def test_module_entry_point(search_run, final) -> None:
    ok = subprocess.run([sys.executable, "-m", "oneshot.export", str(search_run["run_dir"]),
                         "--format", "darts"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert DartsGenotype.from_text(ok.stdout.strip()) == final


def test_text_forms_of_every_space_load(tmp_path: Path) -> None:
    nb201 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"
    assert str(load_genotype(nb201).genotype) == nb201 and load_genotype(nb201).space == "nb201"
    (tmp_path / "cell.txt").write_text(nb201 + "\n")
    assert load_genotype(tmp_path / "cell.txt").space == "nb201"
    darts_v2 = str(load_genotype("DARTS_V2").genotype)
    assert load_genotype(darts_v2).space == "darts"
    with pytest.raises(GenotypeError, match="darts: .*; nb201: ") as err:
        load_genotype("|not_an_op~0|+|x|")
    assert "\n" not in str(err.value)
