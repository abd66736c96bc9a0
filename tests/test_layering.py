"""Package layering and source rules: no Lightning below oneshot/, no eval/exec, safe torch.load."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("oneshot", "supernets", "tasks")
SOURCES = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))

IMPORT_ALL = """
import importlib, json, pkgutil, sys
for package in ("supernets", "tasks"):
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        importlib.import_module(info.name)
def loaded(*tops):
    return sorted(m for m in sys.modules if m.split(".")[0] in tops)
print(json.dumps({"modules": loaded("supernets", "tasks"),
                  "lightning": loaded("pytorch_lightning", "lightning")}))
"""


def _calls(path: Path) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.Call)]


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return f"{_name(func.value)}.{func.attr}"
    return ""


def test_sources_found() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in SOURCES}
    assert {"oneshot/train.py", "supernets/ops.py", "tasks/cifar.py"} <= names


def test_supernets_and_tasks_do_not_import_lightning() -> None:
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    expected = {"supernets.darts.search", "supernets.spaces", "tasks.cifar", "tasks.loader"}
    assert expected <= set(report["modules"])
    assert report["lightning"] == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_eval_or_exec(path: Path) -> None:
    # The builtins only: ``module.eval()`` (nn.Module's eval mode) runs no text.
    bad = [f"line {node.lineno}: {_name(node.func)}(" for node in _calls(path)
           if _name(node.func) in ("eval", "exec", "builtins.eval", "builtins.exec")]
    assert bad == []
    assert "__builtins__" not in path.read_text()


def test_every_torch_load_is_weights_only() -> None:
    loads, unsafe = 0, []
    for path in SOURCES:
        text = path.read_text()
        assert "from torch import load" not in text, path
        for node in _calls(path):
            if _name(node.func) == "torch.load":
                loads += 1
                keywords = {k.arg: k.value for k in node.keywords}
                value = keywords.get("weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    unsafe.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        assert text.count("torch.load(") == sum(_name(n.func) == "torch.load" for n in _calls(path))
    assert loads >= 2  # the CIFAR cache and the checkpoint reader
    assert unsafe == []
