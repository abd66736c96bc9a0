"""Run a search: ``python -m oneshot.train task=cifar10 space=darts algorithm=darts``.

Only Hydra, OmegaConf and the command-line checks are imported with this module: torch, Lightning
and the search code are imported by the functions that use them, after the command line was
checked (so a typo or ``--help`` answers at once).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from oneshot.tables.benchmark import ResultTable, load_benchmark_table
from oneshot.commandline.checks import quiet_on_broken_pipe, report_user_errors, run_cli
from oneshot.commandline.schema import check_options
from oneshot.errors import ConfigError
from oneshot.storage.classes import write_classes
from oneshot.storage.rundir import (discard_unused_hydra_dir, is_secondary_process, release_run_dir,
                            resolve_run_dir, write_resolved_config)

if TYPE_CHECKING:
    import pytorch_lightning as pl


TRAINER_SETUP_KEYS = ("accelerator", "devices", "strategy", "num_nodes", "precision")
"""The trainer options Lightning checks against the machine (named when it refuses them)."""


def _options(node: DictConfig, *, drop: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    """A config node as plain keyword arguments, without ``drop``."""
    return {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in drop}


def check_config(cfg: DictConfig) -> None:
    """Reject an option of the wrong type or out of its range (as ``oneshot.commandline.schema``
    declares them) with a one-line ConfigError, before a run reads data or writes anything."""
    check_options(cfg, "train")


def benchmark_table(cfg: DictConfig) -> ResultTable | None:
    """The results named by ``benchmark.table`` (a CSV) or ``benchmark.nats`` (the NATS-Bench
    topology file, space=nb201), read and checked, or ``None`` when neither is set."""
    node = cfg.get("benchmark")  # absent from the config of a run started before the option
    nats = None if node is None else node.get("nats")
    if node is None or not (node.table or nats):
        return None
    if node.table and nats:
        raise ConfigError("benchmark.table and benchmark.nats are both set; choose one of them")
    if nats:
        if cfg.space.name != "nb201":
            raise ConfigError(f"benchmark.nats holds NATS-Bench cells of space=nb201, not of "
                              f"space={cfg.space.name}; search space=nb201 or drop benchmark.nats")
        from oneshot.tables.nats import load_nats_table
        return load_nats_table(nats)
    return load_benchmark_table(node.table, arch_column=node.arch_column,
                                columns=None if node.columns is None else list(node.columns))


def build_trainer(cfg: DictConfig, run_dir: Path, callbacks: list[pl.Callback]) -> pl.Trainer:
    """The Lightning Trainer for ``cfg.trainer``, logging to TensorBoard and checkpointing in ``run_dir``."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import TensorBoardLogger
    from pytorch_lightning.utilities.exceptions import MisconfigurationException

    from oneshot.storage.checkpointing import AtomicCheckpointIO
    from oneshot.search.distributed import make_strategy

    options = {k: v for k, v in _options(cfg.trainer, drop=()).items() if v is not None}
    options["strategy"] = make_strategy(options.get("strategy", "auto"))
    # One checkpoint, ``last.ckpt``, overwritten every epoch (``save_last`` with ``save_top_k=0``
    # would write it only when training ends, so a failed search would keep nothing).
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_top_k=1,
                                 enable_version_counter=False)
    logger = TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="",
                               default_hp_metric=False)
    try:
        return pl.Trainer(**options, default_root_dir=str(run_dir), logger=logger,
                          callbacks=[checkpoint, *callbacks], use_distributed_sampler=False,
                          enable_model_summary=False, plugins=[AtomicCheckpointIO()])
    except (TypeError, ValueError, MisconfigurationException) as err:
        raise ConfigError(trainer_error(cfg, err)) from None


def trainer_error(cfg: DictConfig, err: Exception) -> str:
    """Lightning's refusal of the trainer options as one line naming the options it set up from."""
    setup = " ".join(f"trainer.{key}={cfg.trainer[key]}" for key in TRAINER_SETUP_KEYS
                     if key in cfg.trainer)
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return f"cannot start the trainer with {setup}: {reason}"


def step_checkpoint(cfg: DictConfig, run_dir: Path) -> pl.Callback:
    """The callback that saves ``last.ckpt`` inside an epoch (``cfg.checkpoint``) and on SIGTERM,
    SIGUSR1 or SIGINT (then stops the search; see ``oneshot.search.signals``)."""
    from oneshot.search.signals import StepCheckpoint

    node = cfg.get("checkpoint") or {}  # absent from the config of a run started before the option
    return StepCheckpoint(run_dir / "checkpoints" / "last.ckpt", run_dir=run_dir,
                          every_n_steps=node.get("every_n_steps"),
                          every_minutes=node.get("every_minutes"))


TASK_SUBSET_KEYS = ("name", "subset", "subset_at_most")
"""Task options the run applies itself (the others go to ``tasks.load_task``)."""


def task_subset(cfg: DictConfig, num_train: int) -> int | None:
    """How many training images to use: ``task.subset``, or a preset's ``task.subset_at_most``
    when the data has more (saying so in one line when it has fewer)."""
    from tasks.split import fit_subset

    subset, note = fit_subset(cfg.task.subset, cfg.task.get("subset_at_most"), num_train)
    if note is not None and not is_secondary_process():
        print(note, file=sys.stderr)
    return subset


def load_task(name: str, **options: Any) -> Any:
    """``tasks.load_task`` (imported on first use: it brings torch)."""
    from tasks import load_task as load

    return load(name, **options)


def train(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Search an architecture as ``cfg`` says; returns the final genotype, val accuracy and run dir.

    With ``cfg.resume`` set, the search saved in that run dir continues with the config it was
    started with (its ``config.yaml``) from its last checkpoint; of the command-line
    ``overrides``, ``trainer.max_epochs`` extends it and the others are named as ignored.
    """
    import pytorch_lightning as pl
    import torch

    from oneshot.search.algorithms import (algorithm_space_options, check_search_setup,
                                           create_algorithm)
    from oneshot.search.callbacks import (AlphaLogger, BenchmarkLogger, CellDiagramWriter, EpochSeed,
                                   GenotypeAgreement, GenotypeWriter, SkipConnectEarlyStop)
    from oneshot.training.datamodules import SearchDataModule
    from oneshot.errors import NonFiniteLossError
    from oneshot.search.resume import ExtendedSchedule, check_resume, extends, find_resume_point, resume_config
    from oneshot.search.selection.runner import check_selection, check_single_process, select_by_perturbation
    from oneshot.search.distributed import available_cores, share_threads
    from oneshot.storage.sweep import parallel_jobs, running_hydra_config
    from supernets.spaces import create_supernet, get_space

    resume = find_resume_point(cfg.resume) if cfg.get("resume") else None
    if resume is not None:
        cfg = resume_config(resume, overrides)
    check_config(cfg)
    share_threads(cfg.get("threads"), cfg.trainer, parallel_jobs(running_hydra_config(), available_cores()))
    check_search_setup(cfg)
    check_selection(cfg.get("selection") or {}, cfg.algorithm.name)
    # what the algorithm adds to the space's options (pcdarts: partial_channels); the fixed
    # network is built without them, from the space's own options recorded in the meta below
    algorithm_options = algorithm_space_options(cfg.algorithm.name, get_space(cfg.space.name).supernet,
                                                _options(cfg.algorithm))
    table = benchmark_table(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dataset = load_task(cfg.task.name, **_options(cfg.task, drop=TASK_SUBSET_KEYS))
    datamodule = SearchDataModule(dataset, batch_size=cfg.data.batch_size, seed=cfg.seed,
                                  subset=task_subset(cfg, len(dataset.train_labels)),
                                  eval_batch_size=cfg.data.eval_batch_size,
                                  channels_last=cfg.data.channels_last)
    supernet = create_supernet(cfg.space.name, num_classes=dataset.num_classes,
                               **_options(cfg.space), **algorithm_options)
    if cfg.data.channels_last:
        supernet = supernet.to(memory_format=torch.channels_last)
    module = create_algorithm(cfg.algorithm.name, supernet, num_classes=dataset.num_classes,
                              cfg=_options(cfg.algorithm))
    if resume is not None:
        check_resume(resume, cfg)
    extended = resume is not None and extends(resume, cfg)
    run_dir = resume.run_dir if resume is not None else resolve_run_dir(cfg)
    meta = {"task": cfg.task.name, "algorithm": cfg.algorithm.name, "seed": cfg.seed,
            "space_options": _options(cfg.space)}  # how to build the space's fixed network
    callbacks = [EpochSeed(cfg.seed), GenotypeAgreement(), AlphaLogger(),
                 GenotypeWriter(run_dir, space=cfg.space.name, meta=meta, benchmark=table),
                 CellDiagramWriter(run_dir, space=cfg.space.name)]
    if table is not None:
        callbacks.append(BenchmarkLogger(table))
    if cfg.early_stop.skip_connect is not None:
        callbacks.append(SkipConnectEarlyStop(cfg.early_stop.skip_connect, space=cfg.space.name))
    if extended:
        callbacks.append(ExtendedSchedule())
    callbacks.append(step_checkpoint(cfg, run_dir))
    trainer = build_trainer(cfg, run_dir, callbacks)
    perturbation = (cfg.get("selection") or {}).get("name") == "perturbation"
    if perturbation:
        check_single_process(trainer.world_size)
    if trainer.is_global_zero and (resume is None or extended):
        write_resolved_config(cfg, run_dir)
        write_classes(run_dir, task=cfg.task.name, classes=dataset.classes,
                      mean=dataset.mean, std=dataset.std)
    try:
        trainer.fit(module, datamodule=datamodule,
                    ckpt_path=None if resume is None else str(resume.checkpoint), weights_only=True)
    except NonFiniteLossError as err:
        raise NonFiniteLossError(f"{err}; {what_was_kept(run_dir)}") from None
    val_acc = trainer.callback_metrics.get("val/acc")
    genotype = module.genotype()
    if perturbation:  # after the last epoch: the selected genotype replaces genotype.json
        genotype = select_by_perturbation(
            module, datamodule, trainer, selection=_options(cfg.selection), trainer=_options(
                cfg.trainer, drop=()), run_dir=run_dir, space=cfg.space.name,
            space_options=_options(cfg.space), benchmark=table)
    release_run_dir(run_dir)
    return {"genotype": genotype, "val_acc": None if val_acc is None else float(val_acc),
            "run_dir": run_dir}


def what_was_kept(run_dir: Path) -> str:
    """What a search that stopped on a non-finite loss leaves to resume from."""
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    if checkpoint.is_file():
        return (f"the search stopped and kept its last good checkpoint, {checkpoint} (resume="
                f"{run_dir} continues from it)")
    return "the search stopped before its first epoch ended, so it kept no checkpoint to resume from"


def print_result(result: dict[str, Any]) -> None:
    """Print the genotype and the run dir, once: on the first process of a distributed search."""
    if not is_secondary_process():
        print(f"genotype: {result['genotype']}")
        print(f"outputs: {result['run_dir']}")


@hydra.main(version_base="1.3", config_path="conf/search", config_name="train")
@report_user_errors
def _hydra_main(cfg: DictConfig) -> None:
    result = train(cfg, overrides=list(HydraConfig.get().overrides.task))
    discard_unused_hydra_dir(result["run_dir"])
    print_result(result)


@quiet_on_broken_pipe
def main() -> None:
    """Console entry point (``oneshot-train``)."""
    run_cli(_hydra_main, "oneshot.conf.search", "train", sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
