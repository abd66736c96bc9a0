"""Train a derived genotype from scratch: ``python -m oneshot.retrain genotype=PATH task=...``.

Torch, Lightning and the network code are imported by the functions that use them, after the
command line was checked (so a typo or ``--help`` answers at once).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from oneshot.commandline.checks import quiet_on_broken_pipe, report_user_errors, run_cli
from oneshot.commandline.schema import check_options
from oneshot.errors import ConfigError
from oneshot.storage.files import save_genotype_file, write_atomic
from oneshot.storage.rundir import (discard_unused_hydra_dir, is_secondary_process, release_run_dir,
                            resolve_run_dir, write_resolved_config)
from oneshot.storage.classes import write_classes
from oneshot.train import TASK_SUBSET_KEYS, build_trainer, task_subset

if TYPE_CHECKING:
    from oneshot.storage.genotypes import LoadedGenotype
    from tasks.data import ImageDataset

FLOP_COUNTER = ("torch.utils.flop_counter.FlopCounterMode: convolutions and matrix multiplications "
                "of one eval-mode forward pass at 2 FLOPs per multiply-add (macs = flops / 2)")


def _node(cfg: DictConfig, key: str) -> dict[str, Any]:
    """The config node ``key`` as a plain dict."""
    return OmegaConf.to_container(cfg[key], resolve=True)


def check_retrain_config(cfg: DictConfig) -> None:
    """Reject a missing genotype, or an option of the wrong type or out of its range (as
    ``oneshot.commandline.schema`` declares them), with a one-line ConfigError."""
    if OmegaConf.is_missing(cfg, "genotype") or not str(cfg.genotype).strip():
        from supernets.darts.published import list_published

        raise ConfigError("no genotype given; pass genotype=PATH (a search run dir, genotype.json "
                          "or DARTS text file) or a published name "
                          f"({', '.join(list_published())})")
    check_options(cfg, "retrain")


def train_subset(dataset: ImageDataset, subset: int | None, seed: int) -> ImageDataset:
    """The dataset with only ``subset`` seeded training images (all of them for ``None``)."""
    import torch

    from tasks.errors import TaskError
    from tasks.seeding import seeded_generator

    if subset is None:
        return dataset
    n = len(dataset.train_labels)
    if not 1 <= subset <= n:
        raise TaskError(f"task.subset={subset} is out of range; choose 1 <= subset <= {n} "
                        "(the number of training images) or null")
    keep = torch.randperm(n, generator=seeded_generator(seed))[:subset].sort().values
    return dataclasses.replace(dataset, train_images=dataset.train_images[keep],
                               train_labels=dataset.train_labels[keep])


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` as indented JSON atomically (temporary file, then rename)."""
    write_atomic(path, (json.dumps(document, indent=2) + "\n").encode("utf-8"))


def _architecture(loaded: LoadedGenotype) -> dict[str, Any]:
    """The genotype record kept in the run dir and the checkpoints."""
    return {"space": loaded.space, "genotype": loaded.genotype.to_dict(),
            "meta": {**loaded.meta, "source": loaded.source}}


def retrain(cfg: DictConfig) -> dict[str, Any]:
    """Train ``cfg.genotype`` from scratch; returns the fields of metrics.json and ``run_dir``."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import LearningRateMonitor

    from oneshot.training.datamodules import RetrainDataModule
    from oneshot.storage.genotypes import load_genotype
    from oneshot.retraining.module import RetrainModule, RetrainOptimizerConfig
    from supernets.measure import count_flops, count_parameters
    from supernets.spaces import create_network
    from tasks import load_task

    check_retrain_config(cfg)
    loaded = load_genotype(str(cfg.genotype))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    task_options = {k: v for k, v in _node(cfg, "task").items() if k not in TASK_SUBSET_KEYS}
    dataset = load_task(cfg.task.name, **task_options)
    dataset = train_subset(dataset, task_subset(cfg, len(dataset.train_labels)), cfg.seed)
    network = create_network(loaded.space, loaded.genotype, num_classes=dataset.num_classes,
                             space_options=loaded.meta.get("space_options"),
                             **_node(cfg, "network"))
    input_size = (1, *dataset.image_shape)
    params, flops = count_parameters(network), count_flops(network, input_size)
    params_with_auxiliary = count_parameters(network, skip=())
    architecture = _architecture(loaded)
    try:
        module = RetrainModule(network, num_classes=dataset.num_classes,
                               optimizer=RetrainOptimizerConfig(**_node(cfg, "optimizer")),
                               architecture=architecture, **_node(cfg, "training"))
    except TypeError as err:
        raise ConfigError(f"bad option under training or optimizer: {err}") from None
    datamodule = RetrainDataModule(dataset, batch_size=cfg.data.batch_size, seed=cfg.seed,
                                   cutout=cfg.data.cutout, eval_batch_size=cfg.data.eval_batch_size)
    run_dir = resolve_run_dir(cfg)
    trainer = build_trainer(cfg, run_dir, [LearningRateMonitor(logging_interval="epoch")])
    if trainer.is_global_zero:
        write_resolved_config(cfg, run_dir)
        save_genotype_file(run_dir / "genotype.json", space=architecture["space"],
                           genotype=architecture["genotype"], meta=architecture["meta"])
        write_classes(run_dir, task=cfg.task.name, classes=dataset.classes,
                      mean=dataset.mean, std=dataset.std)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    train_time = time.perf_counter() - start
    tested = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    metrics = {
        "test_acc": float(tested["test/acc"]),
        "test_images": int(tested["test/images"]),
        "params": params,
        "params_with_auxiliary": params_with_auxiliary,
        "flops": flops,
        "macs": flops // 2,
        "flop_counter": FLOP_COUNTER,
        "input_size": list(input_size),
        "train_time_s": round(train_time, 3),
        "epochs": trainer.current_epoch,
        "task": cfg.task.name,
        "space": loaded.space,
        "genotype_source": loaded.source,
        "genotype": str(loaded.genotype),
    }
    if trainer.is_global_zero:
        write_json(run_dir / "metrics.json", metrics)
    release_run_dir(run_dir)
    return {**metrics, "run_dir": run_dir}


def print_result(result: dict[str, Any]) -> None:
    """Print the test accuracy, size and run dir, once: on the first process of a distributed run."""
    if is_secondary_process():
        return
    print(f"test accuracy: {100 * result['test_acc']:.2f}% on {result['test_images']} images | "
          f"params {result['params']:,} (without auxiliary head) | "
          f"multiply-adds {result['macs'] / 1e6:.1f} M | train time {result['train_time_s']:.0f} s")
    print(f"outputs: {result['run_dir']}")


@hydra.main(version_base="1.3", config_path="conf/retrain", config_name="retrain")
@report_user_errors
def _hydra_main(cfg: DictConfig) -> None:
    result = retrain(cfg)
    discard_unused_hydra_dir(result["run_dir"])
    print_result(result)


@quiet_on_broken_pipe
def main() -> None:
    """Console entry point (``oneshot-retrain``)."""
    run_cli(_hydra_main, "oneshot.conf.retrain", "retrain", sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
