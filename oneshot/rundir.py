"""Where a run writes, and the resolved config it leaves there."""

from __future__ import annotations

import shutil
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from oneshot.errors import ConfigError
from oneshot.files import write_atomic


def resolve_run_dir(cfg: DictConfig) -> Path:
    """``cfg.run_dir`` if set, else Hydra's output dir, else the working directory; created."""
    if cfg.get("run_dir"):
        run_dir = Path(cfg.run_dir)
    elif HydraConfig.initialized():
        run_dir = Path(HydraConfig.get().runtime.output_dir)
    else:
        run_dir = Path.cwd()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"cannot write to the run dir {run_dir}: {err.strerror}; "
                          "choose another with run_dir=DIR or hydra.run.dir=DIR") from None
    return run_dir


def write_resolved_config(cfg: DictConfig, run_dir: Path) -> Path:
    """Write ``config.yaml`` with every interpolation resolved, so the run can be repeated."""
    path = run_dir / "config.yaml"
    write_atomic(path, OmegaConf.to_yaml(cfg, resolve=True).encode("utf-8"))
    return path


def discard_unused_hydra_dir(run_dir: Path) -> None:
    """Remove Hydra's output dir when the run wrote elsewhere (``run_dir=`` or ``resume=``).

    Only a dir holding nothing but Hydra's own records (``.hydra/``, ``*.log``) is removed.
    """
    if not HydraConfig.initialized():
        return
    hydra_dir = Path(HydraConfig.get().runtime.output_dir)
    if hydra_dir.resolve() == Path(run_dir).resolve() or not hydra_dir.is_dir():
        return
    if all(p.name == ".hydra" or p.suffix == ".log" for p in hydra_dir.iterdir()):
        shutil.rmtree(hydra_dir, ignore_errors=True)
