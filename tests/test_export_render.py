"""``oneshot.export --format svg|png|dot --out DIR`` and ``--alpha-plot``, with and without dot."""

from __future__ import annotations

import re

import pytest

from oneshot.export import main
from oneshot.storage.genotypes import load_genotype
from oneshot.render import dot_available
from supernets.darts.genotype import DartsGenotype
from supernets.darts.published import get_published

needs_dot = pytest.mark.skipif(not dot_available(), reason="Graphviz's dot is not installed")


def _export(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@needs_dot
def test_svg_and_png_of_a_published_cell(tmp_path, capsys) -> None:
    code, out, err = _export(capsys, "DARTS_V2", "--format", "svg", "--format", "png",
                             "--out", tmp_path)
    assert (code, err) == (0, "")
    names = ["normal.svg", "reduce.svg", "normal.png", "reduce.png"]
    assert out.splitlines() == [str(tmp_path / name) for name in names]
    assert "dil_conv_3x3" in (tmp_path / "normal.svg").read_text()
    assert (tmp_path / "reduce.png").read_bytes()[:4] == b"\x89PNG"


def test_without_dot_other_outputs_still_written(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out_dir = tmp_path / "out"
    code, out, err = _export(capsys, "PC_DARTS", "--format", "svg", "--format", "json",
                             "--format", "darts", "--out", out_dir)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: Graphviz's `dot` program was not found")
    assert "apt-get install graphviz" in err
    assert err.rstrip().endswith("wrote the dot source (.dot) instead")
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "genotype.json", "genotype.txt", "normal.dot", "reduce.dot"]
    published = get_published("PC_DARTS")[0]
    assert load_genotype(out_dir / "genotype.json").genotype == published
    assert DartsGenotype.from_text((out_dir / "genotype.txt").read_text()) == published
    assert str(out_dir / "normal.dot") in out.splitlines()
    assert (out_dir / "normal.dot").read_text().startswith("digraph normal {")


def test_dot_source_of_a_run_dir_matches_its_genotype(search_run, tmp_path, capsys) -> None:
    code, _, err = _export(capsys, search_run["run_dir"], "--format", "dot", "--out", tmp_path)
    assert (code, err) == (0, "")
    genotype = load_genotype(search_run["run_dir"]).genotype
    for cell in ("normal", "reduce"):
        source = (tmp_path / f"{cell}.dot").read_text()
        ops = re.findall(r"-> n\d \[label=(\w+)", source)
        assert ops == [op for op, _ in getattr(genotype, cell)]


def test_image_formats_need_out(capsys) -> None:
    code, out, err = _export(capsys, "DARTS_V2", "--format", "json", "--format", "png")
    assert (code, out) == (2, "")
    assert err == "error: --format png writes one file per cell; add --out DIR\n"


def test_unwritable_out_is_one_line(tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = _export(capsys, "DARTS_V2", "--format", "dot", "--out", blocker / "sub")
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: cannot write")


def test_alpha_plot_of_a_run_dir(search_run, tmp_path, capsys) -> None:
    code, out, err = _export(capsys, search_run["run_dir"], "--alpha-plot", "--out", tmp_path)
    assert (code, err) == (0, "")
    assert out.splitlines() == [str(tmp_path / f"alpha_evolution_{cell}.png")
                                for cell in ("normal", "reduce")]
    assert (tmp_path / "alpha_evolution_reduce.png").read_bytes()[:4] == b"\x89PNG"


def test_alpha_plot_needs_a_run_dir(capsys) -> None:
    code, out, err = _export(capsys, "DARTS_V2", "--alpha-plot")
    assert (code, out) == (2, "")
    assert err.startswith("error: no TensorBoard events in 'DARTS_V2'") and err.count("\n") == 1
