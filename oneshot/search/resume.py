"""Continue a search from its run dir or checkpoint, with the configuration it was started with.

Only ``trainer.max_epochs`` may change on resume: a larger value extends the search, its
learning-rate schedule re-planned over the new length; every other override is ignored (and named).
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pytorch_lightning as pl
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from torch.optim.lr_scheduler import CosineAnnealingLR

from oneshot.storage.checkpointing import load_checkpoint_file
from oneshot.errors import ConfigError
from oneshot.storage.rundir import is_secondary_process, run_dir_of

EXTENDABLE = "trainer.max_epochs"  # the one option a resume takes from the command line


@dataclass(frozen=True)
class ResumePoint:
    """Where a search continues: its run dir, the checkpoint, the config it ran with."""

    run_dir: Path
    checkpoint: Path
    config: DictConfig


def find_resume_point(path: str | Path) -> ResumePoint:
    """Locate the checkpoint and saved ``config.yaml`` of a run dir or of a checkpoint inside one."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"resume={path}: no such run dir or checkpoint; pass the run dir of a search")
    run_dir = run_dir_of(path)
    checkpoint = path if path.is_file() else run_dir / "checkpoints" / "last.ckpt"
    if not checkpoint.is_file():
        raise ConfigError(f"resume={path}: {checkpoint} not found; the search stopped before its "
                          "first epoch ended, so start it again")
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise ConfigError(f"resume={path}: {config_file} not found; resume needs the run dir that "
                          "oneshot.train wrote")
    config = OmegaConf.load(config_file)
    if not isinstance(config, DictConfig):
        raise ConfigError(f"resume={path}: {config_file} is not a config mapping")
    return ResumePoint(run_dir=run_dir, checkpoint=checkpoint, config=config)


def check_checkpoint_matches(checkpoint_path: Path, *, space: str, algorithm: str) -> int:
    """Refuse a checkpoint written by a search of another space or algorithm; returns the number
    of epochs the search had finished when it was written."""
    checkpoint = load_checkpoint_file(checkpoint_path)
    record = checkpoint.get("oneshot") or {}
    saved_algorithm = (checkpoint.get("hyper_parameters") or {}).get("algorithm")
    if record.get("space") != space or saved_algorithm != algorithm:
        raise ConfigError(
            f"checkpoint '{checkpoint_path}' is from a search of space={record.get('space')} "
            f"algorithm={saved_algorithm}, not space={space} algorithm={algorithm}; resume it with "
            "its own config")
    return finished_epochs(checkpoint)


def finished_epochs(checkpoint: dict) -> int:
    """The epochs a search had finished when it wrote ``checkpoint``: its epoch, plus one when it
    was written at the epoch's end (not inside it, by ``checkpoint.every_n_steps`` or a signal)."""
    progress = ((checkpoint.get("loops") or {}).get("fit_loop") or {}).get("epoch_progress")
    if progress is None:
        return int(checkpoint.get("epoch", -1)) + 1
    return int(progress["total"]["processed"])


def resume_config(point: ResumePoint, overrides: Sequence[str]) -> DictConfig:
    """The saved config of ``point`` with ``trainer.max_epochs`` taken from the command-line
    ``overrides`` (to extend the search); the other overrides are named in one warning line."""
    config = copy.deepcopy(point.config)
    ignored = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.input_line.partition("=")[0]
        if key == "resume" or key.startswith("hydra."):
            continue
        if key == EXTENDABLE and not override.is_sweep_override():
            OmegaConf.update(config, EXTENDABLE, override.value())
        else:
            ignored.append(override.input_line)
    if ignored and not is_secondary_process():
        print(f"warning: resume continues with {point.run_dir / 'config.yaml'}, so "
              f"{', '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} ignored (only "
              f"{EXTENDABLE} can change, to extend the search)", file=sys.stderr)
    return config


def extends(point: ResumePoint, cfg: DictConfig) -> bool:
    """Whether ``cfg`` (from :func:`resume_config`) runs the search for more epochs than saved."""
    return cfg.trainer.max_epochs != point.config.trainer.max_epochs


def check_resume(point: ResumePoint, cfg: DictConfig) -> None:
    """Refuse a checkpoint of another space or algorithm than ``cfg``'s, and a new
    ``trainer.max_epochs`` that is not past the epochs the search has finished."""
    finished = check_checkpoint_matches(point.checkpoint, space=cfg.space.name,
                                        algorithm=cfg.algorithm.name)
    if extends(point, cfg) and cfg.trainer.max_epochs <= finished:
        raise ConfigError(f"{EXTENDABLE}={cfg.trainer.max_epochs} does not extend the search: it "
                          f"has finished {finished} epochs; pass a larger value")


def replan_cosine(schedule: CosineAnnealingLR, epochs: int) -> None:
    """Re-plan a cosine schedule over ``epochs``, setting the learning rates of its epoch on the
    new curve (its recursive steps then stay on that curve)."""
    schedule.T_max = epochs
    factor = (1 + math.cos(math.pi * schedule.last_epoch / epochs)) / 2
    for group, base_lr in zip(schedule.optimizer.param_groups, schedule.base_lrs):
        group["lr"] = schedule.eta_min + (base_lr - schedule.eta_min) * factor


class ExtendedSchedule(pl.Callback):
    """A search resumed with a larger ``trainer.max_epochs``: its cosine learning-rate schedules,
    restored from the checkpoint with the old length, are re-planned over the new one."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for config in trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, CosineAnnealingLR) and trainer.max_epochs:
                replan_cosine(config.scheduler, trainer.max_epochs)
