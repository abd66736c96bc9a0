"""Continue a search from its run dir or checkpoint, with the configuration it was started with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from oneshot.checkpointing import load_checkpoint_file
from oneshot.errors import ConfigError


@dataclass(frozen=True)
class ResumePoint:
    """Where a search continues: its run dir, the checkpoint, the config it ran with."""

    run_dir: Path
    checkpoint: Path
    config: DictConfig


def find_resume_point(path: str | Path) -> ResumePoint:
    """Locate the checkpoint and saved ``config.yaml`` of a run dir or of a checkpoint inside one."""
    path = Path(path)
    if path.is_dir():
        run_dir, checkpoint = path, path / "checkpoints" / "last.ckpt"
    elif path.is_file():
        checkpoint = path
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    else:
        raise ConfigError(f"resume={path}: no such run dir or checkpoint; pass the run dir of a search")
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


def check_checkpoint_matches(checkpoint_path: Path, *, space: str, algorithm: str) -> None:
    """Refuse a checkpoint written by a search of another space or algorithm."""
    checkpoint = load_checkpoint_file(checkpoint_path)
    record = checkpoint.get("oneshot") or {}
    saved_algorithm = (checkpoint.get("hyper_parameters") or {}).get("algorithm")
    if record.get("space") != space or saved_algorithm != algorithm:
        raise ConfigError(
            f"checkpoint '{checkpoint_path}' is from a search of space={record.get('space')} "
            f"algorithm={saved_algorithm}, not space={space} algorithm={algorithm}; resume it with "
            "its own config")
