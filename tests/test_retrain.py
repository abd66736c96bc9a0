"""oneshot.retrain: config defaults, the training module, end-to-end runs and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_module
from torch.nn import functional as F

from oneshot.commandline.checks import validate_overrides
from oneshot.training.datamodules import RetrainDataModule
from oneshot.errors import ConfigError
from oneshot.storage.files import save_genotype_file
from oneshot.storage.genotypes import load_genotype
from oneshot.retrain import retrain
from oneshot.retraining.module import RetrainModule, drop_path_at, retrain_loss
from supernets.darts.derived import DartsNetwork
from supernets.darts.published import get_published, list_published
from supernets.errors import GenotypeError
from supernets.measure import count_flops, count_parameters, derived_params
from supernets.spaces import create_network
from tasks import load_task

REPO = Path(__file__).resolve().parents[1]
TINY = ["task=synthetic", "task.num_train=64", "task.num_test=40", "network.channels=4",
        "network.layers=3", "data.batch_size=16", "data.eval_batch_size=40",
        "trainer.accelerator=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
        "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1"]


def _compose(overrides: list[str]):
    with initialize_config_module(config_module="oneshot.conf.retrain", version_base="1.3"):
        return compose("retrain", overrides=overrides)


def test_defaults_are_the_darts_evaluation_protocol():
    cfg = _compose(["genotype=DARTS_V2"])
    # null network options: each space's own protocol, for DARTS 36 channels, 20 cells, aux head
    assert dict(cfg.network) == {"channels": None, "layers": None, "auxiliary": None}
    with torch.device("meta"):
        network = create_network("darts", get_published("DARTS_V2")[0], num_classes=10,
                                 **cfg.network)
    assert (len(network.cells), network.stem[0].out_channels) == (20, 3 * 36)
    assert network.auxiliary_head is not None
    assert (cfg.trainer.max_epochs, cfg.data.batch_size, cfg.data.cutout) == (600, 96, 16)
    assert dict(cfg.optimizer) == {"lr": 0.025, "momentum": 0.9, "weight_decay": 3e-4,
                                   "lr_min": 0.0}
    assert cfg.trainer.gradient_clip_val == 5.0 and cfg.trainer.precision == "32-true"
    assert dict(cfg.training) == {"auxiliary_weight": 0.4, "drop_path": 0.2,
                                  "channels_last": False, "compile": False}
    quick = _compose(["genotype=DARTS_V2", "experiment=quick"])
    assert quick.network.layers < 20 and quick.trainer.max_epochs < 600


def test_retrain_loss_adds_the_weighted_auxiliary_loss():
    logits, aux, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    main = F.cross_entropy(logits, y)
    assert torch.allclose(retrain_loss(logits, aux, y, 0.4), main + 0.4 * F.cross_entropy(aux, y))
    assert torch.equal(retrain_loss(logits, None, y, 0.4), main)


def test_drop_path_ramps_linearly_from_zero():
    assert [drop_path_at(e, 4, 0.2) for e in range(4)] == pytest.approx([0.0, 0.05, 0.1, 0.15])


class _DropPathRecorder(pl.Callback):
    def __init__(self) -> None:
        self.seen: list[float] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seen.append(pl_module.network.drop_path_prob)


def test_module_ramps_drop_path_and_runs_gpu_options_on_cpu(tmp_path):
    dataset = load_task("synthetic", num_train=32, num_test=16, num_classes=10)
    network = DartsNetwork(get_published("DARTS_V2")[0], channels=4, layers=3)
    module = RetrainModule(network, num_classes=10, drop_path=0.3, channels_last=True)
    assert network.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    recorder = _DropPathRecorder()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=3, limit_train_batches=1,
                         limit_val_batches=0, precision="bf16-mixed", gradient_clip_val=5.0,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, use_distributed_sampler=False,
                         callbacks=[recorder], default_root_dir=tmp_path)
    trainer.fit(module, datamodule=RetrainDataModule(dataset, batch_size=16, cutout=16))
    assert recorder.seen == pytest.approx([0.0, 0.1, 0.2])
    assert all(torch.isfinite(p).all() for p in network.parameters())


def test_end_to_end_retrain_writes_metrics_config_genotype_events_and_weights(tmp_path):
    genotype, _ = get_published("PC_DARTS")
    source = tmp_path / "search" / "genotype.json"
    save_genotype_file(source, space="darts", genotype=genotype.to_dict(),
                       meta={"task": "synthetic", "algorithm": "darts"})
    run_dir = tmp_path / "run"
    metrics = retrain(_compose([f"genotype={source}", f"run_dir={run_dir}", *TINY]))

    written = json.loads((run_dir / "metrics.json").read_text())
    assert written == {k: v for k, v in metrics.items() if k != "run_dir"}
    assert 0.0 <= written["test_acc"] <= 1.0 and written["test_images"] == 40
    reference = DartsNetwork(genotype, num_classes=10, channels=4, layers=3)
    assert written["params"] == count_parameters(reference)
    assert written["params_with_auxiliary"] > written["params"]
    assert written["flops"] == count_flops(reference) and written["macs"] == written["flops"] // 2
    assert written["input_size"] == [1, 3, 32, 32]
    assert written["train_time_s"] > 0 and written["epochs"] == 1
    assert written["genotype_source"] == str(source) and written["space"] == "darts"

    assert (run_dir / "config.yaml").read_text().count("channels: 4") == 1
    copied = load_genotype(run_dir / "genotype.json")
    assert copied.genotype == genotype and copied.meta["algorithm"] == "darts"
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["oneshot"]["space"] == "darts"
    assert load_genotype(run_dir / "checkpoints" / "last.ckpt").genotype == genotype


def test_retrain_the_genotype_of_a_search_run_dir(search_run, tmp_path):
    source = search_run["run_dir"]
    searched = load_genotype(source)
    assert searched.meta["params"] == derived_params("darts", searched.genotype)  # 36 ch, 20 cells
    run_dir = tmp_path / "run"
    metrics = retrain(_compose([f"genotype={source}", f"run_dir={run_dir}", *TINY]))
    assert metrics["genotype_source"] == str(source / "genotype.json")
    assert load_genotype(run_dir).genotype == searched.genotype


def test_missing_genotype_is_a_config_error():
    with pytest.raises(ConfigError, match="no genotype given; pass genotype=PATH"):
        retrain(_compose(TINY))


@pytest.mark.parametrize("override, message", [
    ("training.drop_path=1.0", r"training.drop_path must be a probability in \[0, 1\)"),
    ("training.auxiliary_weight=-1", "training.auxiliary_weight must be a number >= 0"),
    ("data.cutout=-2", "data.cutout must be an integer >= 0"),
    ("+training.dropout=0.1", "bad option under training or optimizer"),
])
def test_bad_training_values_are_config_errors(tmp_path, override, message):
    cfg = _compose(["genotype=DARTS_V2", f"run_dir={tmp_path}", *TINY, override])
    with pytest.raises(ConfigError, match=message):
        retrain(cfg)


def test_unknown_override_key_lists_the_keys():
    with pytest.raises(ConfigError, match="unknown config key 'training.dropout'.*drop_path"):
        validate_overrides("oneshot.conf.retrain", "retrain", ["genotype=X", "training.dropout=1"])


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _other_space(tmp_path: Path) -> Path:
    path = tmp_path / "nb101.json"
    save_genotype_file(path, space="nb101", genotype={"edges": ["skip_connect"] * 6})
    return path


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing.json", "no genotype at '.*missing.json'"),
    (lambda tmp: "NOT_A_NAS", "no genotype at 'NOT_A_NAS'.*" + ", ".join(list_published())),
    (_other_space, "unknown space 'nb101'; choose one of: darts, "),
    (lambda tmp: _write(tmp / "g.txt", "hello"),
     "neither a genotype JSON file nor a genotype.s text form"),
    (lambda tmp: _write(tmp / "g.json", '{"space": "darts", "genotype": {'), "not valid JSON"),
], ids=["missing-file", "unknown-name", "other-space", "malformed-text", "malformed-json"])
def test_bad_genotype_is_a_one_line_error(tmp_path, make, message):
    cfg = _compose([f"genotype={make(tmp_path)}", f"run_dir={tmp_path / 'run'}", *TINY])
    with pytest.raises(GenotypeError, match=message) as info:
        retrain(cfg)
    assert "\n" not in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("make", [lambda tmp: "NOT_A_NAS", _other_space],
                         ids=["unknown-name", "other-space"])
def test_cli_prints_one_line_and_exits_non_zero(tmp_path, make):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "oneshot.retrain", f"genotype={make(tmp_path)}", "task=cifar10",
         f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert not run_dir.exists()
