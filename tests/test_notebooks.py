"""The notebooks run top to bottom (tiny settings) and are committed without outputs."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "oneshot-tests"


def _outputs(notebook: nbformat.NotebookNode) -> tuple[str, list[str]]:
    """All text the code cells printed, and the MIME types of everything they displayed."""
    text, shown = [], []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                text.append(output.text)
            elif output.output_type in ("display_data", "execute_result"):
                shown.extend(output.data)
    return "".join(text), shown


@pytest.fixture
def run_notebook(tmp_path, monkeypatch):
    """Execute a notebook in ``tmp_path`` with a kernel of this interpreter (not whatever
    ``python3`` kernel a machine has installed); returns the executed notebook."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "oneshot tests", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    work = tmp_path / "work"
    work.mkdir()

    def run(name: str) -> nbformat.NotebookNode:
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        NotebookClient(notebook, timeout=180, kernel_name=KERNEL,
                       resources={"metadata": {"path": str(work)}}).execute()
        return notebook

    run.work = work
    return run


@pytest.mark.parametrize("name", ["quickstart.ipynb", "own_search_space.ipynb"])
def test_committed_without_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# ")


def test_quickstart_runs(run_notebook) -> None:
    text, shown = _outputs(run_notebook("quickstart.ipynb"))
    run_dir = run_notebook.work / "runs" / "quickstart"
    assert (run_dir / "genotype.json").is_file()
    assert len(list((run_dir / "diagrams").iterdir())) == 4  # 2 epochs x 2 cells
    assert "28 edges; epochs logged: [0, 1]" in text
    assert "image/png" in shown  # the alpha-evolution figure
    assert "test accuracy" in text
    assert (run_notebook.work / "runs" / "quickstart-retrain" / "metrics.json").is_file()


def test_own_search_space_runs(run_notebook) -> None:
    from oneshot.render import dot_available

    text, shown = _outputs(run_notebook("own_search_space.ipynb"))
    labels = ["cell/op_1", "cell/op_2", "cell/op_3", "cell/input_2", "cell/input_3"]
    assert "torch.Size([2, 4, 4, 4])" in text  # the new operation at stride 2
    assert "cell/input_3  ['0', '1', '2']" in text
    assert ("cell/op_1=skip_connect cell/op_2=skip_connect cell/op_3=skip_connect "
            "cell/input_2=0 cell/input_3=0") in text  # check_space's genotype of uniform weights
    assert "name: notebook_cell\nchannels: 4\ncells: 2\n" in text
    runs = run_notebook.work / "runs" / "own-space"
    for algorithm in ("darts", "gdas"):
        document = json.loads((runs / algorithm / "genotype.json").read_text())
        assert document["space"] == "notebook_cell" and document["meta"]["algorithm"] == algorithm
        assert list(document["genotype"]["choices"]) == labels
        assert len(list((runs / algorithm / "diagrams").glob("epoch_*_choices.*"))) == 2
        assert f"{algorithm}: cell/op_1=" in text
    assert shown.count("image/svg+xml" if dot_available() else "text/markdown") == 2
    assert "choice modules left: none" in text and "logits: (2, 10)" in text
    sizes = re.search(r"parameters: supernet ([\d,]+), fixed network ([\d,]+)", text)
    assert sizes and int(sizes[2].replace(",", "")) < int(sizes[1].replace(",", ""))
