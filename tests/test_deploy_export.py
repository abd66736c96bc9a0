"""Deployable output: a retrain run dir exported to TorchScript and ONNX with its trained weights
and class names, checked against PyTorch, and timed by ``oneshot.latency model=FILE``."""

from __future__ import annotations

import builtins
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from oneshot import export as export_cli
from oneshot import latency as latency_cli
from oneshot.deploy import exporting
from oneshot.deploy.formats import EXTRA_FILE, load_exported
from oneshot.deploy.network import load_trained_network
from oneshot.retrain import retrain
from oneshot.storage.files import save_genotype_file
from oneshot.storage.genotypes import load_checkpoint
from supernets.proxyless.genotype import ProxylessGenotype
from supernets.spaces import create_network
from tasks import load_task

TASK = {"num_train": 24, "num_test": 8, "image_size": 16, "num_classes": 3}
GENOTYPE = ProxylessGenotype(stem_channels=4, stem_stride=2, first_channels=4, head_channels=8,
                             stages=((4, 1, ("mb3_k3", "zero")), (8, 2, ("mb6_k5",))))
NAMES = ["cat", "dog", "emu"]
DIFF = re.compile(r"max abs difference from PyTorch (\S+) on 8 images \(allowed (\S+)\)")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-step retrain of a small stride-2-stem proxyless network on 16x16 synthetic images."""
    from hydra import compose, initialize_config_module

    root = tmp_path_factory.mktemp("deploy")
    save_genotype_file(root / "g.json", space="proxyless", genotype=GENOTYPE.to_dict())
    overrides = [f"genotype={root / 'g.json'}", f"run_dir={root / 'run'}", "task=synthetic",
                 *(f"task.{k}={v}" for k, v in TASK.items()), "data.batch_size=8",
                 "data.eval_batch_size=8", "trainer.accelerator=cpu", "trainer.max_epochs=1",
                 "trainer.limit_train_batches=1", "trainer.enable_progress_bar=false"]
    with initialize_config_module(config_module="oneshot.conf.retrain", version_base="1.3"):
        retrain(compose("retrain", overrides=overrides))
    return root / "run"


@pytest.fixture
def named_run(run_dir: Path, tmp_path: Path) -> Path:
    """The run dir with class names recorded (as task=imagefolder records its folders')."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "classes.json").write_text(json.dumps({"task": "synthetic", "classes": NAMES}))
    return copy


def _trained_reference(run: Path, x: torch.Tensor) -> torch.Tensor:
    """Logits of the checkpoint's network on [0, 1] images, built without oneshot.deploy."""
    network = create_network("proxyless", GENOTYPE, num_classes=3)
    state = load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
    network.load_state_dict({k[len("network."):]: v for k, v in state.items()})
    data = load_task("synthetic", **TASK)
    mean = torch.tensor(data.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.std).view(1, 3, 1, 1)
    with torch.no_grad():
        return network.eval()((x - mean) / std)[0]


def _export(capsys: pytest.CaptureFixture[str], run: Path, fmt: str,
            out: Path) -> tuple[Path, float]:
    assert export_cli.main([str(run), "--format", fmt, "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    path = Path(line.split(" (")[0])
    diff, allowed = (float(v) for v in DIFF.search(line).groups())
    assert f"({fmt}, 3 classes)" in line and diff <= allowed <= 1e-4 * 10
    return path, diff


def _check_model(path: Path, run: Path) -> dict[str, object]:
    model = load_exported(path)
    x = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(3))  # another batch size
    torch.testing.assert_close(model.run(x), _trained_reference(run, x), atol=1e-4, rtol=1e-4)
    assert model.metadata["class_names"] == NAMES and model.metadata["input_size"] == [1, 3, 16, 16]
    assert model.metadata["space"] == "proxyless"
    assert ProxylessGenotype.from_dict(model.metadata["genotype"]) == GENOTYPE
    return model.metadata


def _timed(capsys: pytest.CaptureFixture[str], args: list[str], fmt: str) -> float:
    """The median ``oneshot.latency`` prints for an exported model."""
    assert latency_cli.main([*args, "warmup=1", "repeats=3", "threads=1", "batch_size=2"]) == 0
    line = capsys.readouterr().out
    match = re.search(rf"\({fmt}\) on cpu: .*: median (\S+) ms per batch of 2 \(3x16x16\), "
                      r"1 warm-up and 3 timed runs", line)
    assert match, line
    return float(match.group(1))


def test_torchscript_export_holds_the_trained_weights_and_class_names(capsys, named_run, tmp_path):
    path, diff = _export(capsys, named_run, "torchscript", tmp_path / "out")
    assert path == tmp_path / "out" / "model.torchscript.pt" and diff == 0.0
    _check_model(path, named_run)
    extra = {EXTRA_FILE: ""}
    torch.jit.load(str(path), _extra_files=extra)  # the names are readable without oneshot
    assert json.loads(extra[EXTRA_FILE])["class_names"] == NAMES
    assert _timed(capsys, ["--model", str(path)], "torchscript") > 0


def test_onnx_export_holds_the_trained_weights_and_class_names(capsys, named_run):
    pytest.importorskip("onnxruntime",
                        reason="ONNX needs the export extra: pip install -e '.[export]'")
    onnx_path, _ = _export(capsys, named_run, "onnx", named_run)  # --out the run dir itself
    assert onnx_path == named_run / "model.onnx"
    _check_model(onnx_path, named_run)
    import onnx

    props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert json.loads(props["class_names"]) == NAMES
    assert _timed(capsys, [f"model={onnx_path}"], "onnx") > 0


def test_class_names_fall_back_to_the_tasks(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "classes.json").unlink()
    assert load_trained_network(run).class_names == ("0", "1", "2")  # synthetic's label numbers


def test_mismatch_writes_nothing_and_exits_1(capsys, run_dir, tmp_path, monkeypatch):
    real = exporting.load_exported

    def off_by_a_little(path: Path):  # a runtime whose results drift from PyTorch's
        model = real(path)
        run = model.run
        model.run = lambda x: run(x) + 1e-3
        return model

    monkeypatch.setattr(exporting, "load_exported", off_by_a_little)
    assert export_cli.main([str(run_dir), "--format", "torchscript", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.match(
        r"error: the torchscript model's logits differ from PyTorch's by up to 0\.001 on 8 "
        r"images \(allowed 0\.0001\); not written: ", err)
    assert list(tmp_path.iterdir()) == []  # neither the model nor its partial file


def test_onnx_without_the_extra_is_one_line(capsys, run_dir, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name.split(".")[0] in ("onnx", "onnxruntime"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    assert export_cli.main([str(run_dir), "--format", "onnx", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "error: ONNX needs the export extra (onnx is not installed): "
        "pip install -e \".[export]\"\n")
    assert list(tmp_path.iterdir()) == []


def test_search_run_dir_and_missing_files_are_one_line(capsys, tmp_path):
    (tmp_path / "config.yaml").write_text("seed: 0\nspace:\n  name: proxyless\n")
    assert export_cli.main([str(tmp_path), "--format", "torchscript"]) == 2
    assert "is a search run dir; retrain its genotype first" in capsys.readouterr().err
    assert latency_cli.main(["model=" + str(tmp_path / "none.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model file" in err and "does not exist" in err
