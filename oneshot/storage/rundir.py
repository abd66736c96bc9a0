"""Where a run writes, the resolved config it leaves there, and what a failed run takes back.

Before anything is written into a directory, the run claims it (:class:`RunDirClaim`): which of
its directories do not exist yet and which entries it already holds. A directory that already
holds files (another run's outputs, a project) is refused up front, unless it is the run dir a
``resume=`` continues. A failed run removes exactly what it added, then the directories it
created if they are empty, never a directory that existed before. :class:`RunDirGuard` (a Hydra
callback) claims Hydra's output dir before Hydra creates it.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from oneshot.errors import ConfigError
from oneshot.storage.files import write_atomic

HYDRA_RECORDS = ".hydra"  # Hydra's own record of a launch; with ``*.log`` the only entries it adds
SWEEP_RECORD = "multirun.yaml"  # what Hydra writes into a sweep dir before the first job
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")

_CLAIMS: dict[Path, "RunDirClaim"] = {}  # the directories this process's run writes into


def is_secondary_process() -> bool:
    """Whether this is a distributed process other than the first: it claims and removes nothing."""
    return any(os.environ.get(name, "0").strip() not in ("", "0") for name in RANK_VARIABLES)


def _key(path: str | os.PathLike[str]) -> Path:
    """An absolute path with symbolic links resolved: one key per directory."""
    return Path(path).expanduser().resolve()


@dataclass(frozen=True)
class RunDirClaim:
    """A directory a run writes into: the directories it creates for it, what it held before."""

    path: Path
    made: tuple[Path, ...]  # missing ancestors, then ``path`` itself: the ones this run creates
    before: frozenset[str]  # names of the entries the directory held before the run

    @classmethod
    def take(cls, path: str | os.PathLike[str]) -> RunDirClaim:
        """The state of ``path`` now, before the run creates or writes anything there."""
        path = _key(path)
        missing = []
        node = path
        while not os.path.lexists(node) and node != node.parent:
            missing.append(node)
            node = node.parent
        before = frozenset(os.listdir(path)) if path.is_dir() else frozenset()
        return cls(path=path, made=tuple(reversed(missing)), before=before)

    def create(self) -> None:
        """Create the directory and its missing parents."""
        self.path.mkdir(parents=True, exist_ok=True)

    def added(self) -> set[str]:
        """Names of the entries the run added to the directory."""
        return set(os.listdir(self.path)) - self.before if self.path.is_dir() else set()

    def holds_checkpoint(self) -> bool:
        """Whether the run left a checkpoint here (a failed search is then kept, to resume)."""
        return (self.path / "checkpoints" / "last.ckpt").is_file()

    def undo(self) -> None:
        """Remove what the run added, then the directories it created, innermost first, if empty."""
        for name in sorted(self.added()):
            entry = self.path / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        for directory in reversed(self.made):
            try:
                directory.rmdir()
            except OSError:  # not empty (something else wrote there meanwhile) or already gone
                break


def _foreign(claim: RunDirClaim, *, hydra_records: bool) -> list[str]:
    """Entries the directory held before the run; Hydra's own records of this launch excepted."""
    return sorted(name for name in claim.before
                  if not (hydra_records and (name == HYDRA_RECORDS or name.endswith(".log"))))


def claim_run_dir(path: str | os.PathLike[str], option: str, *, hydra_records: bool = False,
                  resume: str | None = None) -> RunDirClaim:
    """Claim ``path`` for this run; a directory already holding files is refused (ConfigError).

    ``option`` names the override that chose it (for the message); ``hydra_records`` allows the
    ``.hydra/`` and ``*.log`` Hydra wrote there for this launch; the run dir of ``resume`` may hold
    that search's files.
    """
    key = _key(path)
    if key in _CLAIMS and key == _hydra_output_dir():  # claimed by RunDirGuard for this launch
        return _CLAIMS[key]
    _CLAIMS.pop(key, None)  # left by an earlier run in this process: look again
    if os.path.lexists(key) and not key.is_dir():
        raise ConfigError(f"the run dir {path} is a file, not a directory; choose another with "
                          f"{option}=DIR")
    claim = RunDirClaim.take(key)
    foreign = _foreign(claim, hydra_records=hydra_records)
    if foreign and not (resume and _key(run_dir_of(resume)) == key):
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        count = f"{len(foreign)} entries" if len(foreign) > 1 else "an entry"
        raise ConfigError(f"the run dir {path} already holds {count} ({shown}); "
                          f"choose a new or empty directory with {option}=DIR, so that nothing "
                          "there is overwritten or removed")
    _CLAIMS[key] = claim
    return claim


def release_run_dir(run_dir: str | os.PathLike[str]) -> None:
    """Forget the claim on ``run_dir``: the run finished, what it wrote there stays."""
    _CLAIMS.pop(_key(run_dir), None)


def _hydra_output_dir() -> Path | None:
    """Hydra's output dir of the job running now, if any."""
    if not HydraConfig.initialized():
        return None
    output_dir = OmegaConf.select(HydraConfig.get(), "runtime.output_dir", default=None)
    return None if output_dir is None else _key(output_dir)


def run_dir_of(path: str | os.PathLike[str]) -> Path:
    """The run dir of ``path``: a run dir itself, or the run dir a checkpoint file lies in."""
    path = Path(path)
    if path.is_file():
        return path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return path


def resolve_run_dir(cfg: DictConfig) -> Path:
    """``cfg.run_dir`` if set, else Hydra's output dir, else the working directory; claimed, created."""
    if cfg.get("run_dir"):
        run_dir, option, hydra_records = Path(cfg.run_dir), "run_dir", False
    elif HydraConfig.initialized():
        run_dir, option, hydra_records = Path(HydraConfig.get().runtime.output_dir), "hydra.run.dir", True
    else:
        run_dir, option, hydra_records = Path.cwd(), "run_dir", False
    if is_secondary_process():  # the first process claims and probes: writing here would race it
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    claim_run_dir(run_dir, option, hydra_records=hydra_records)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"cannot write to the run dir {run_dir}: {err.strerror}; "
                          f"choose another with {option}=DIR") from None
    return run_dir


def write_resolved_config(cfg: DictConfig, run_dir: Path) -> Path:
    """Write ``config.yaml`` with every interpolation resolved, so the run can be repeated."""
    path = run_dir / "config.yaml"
    write_atomic(path, OmegaConf.to_yaml(cfg, resolve=True).encode("utf-8"))
    return path


def discard_unused_hydra_dir(run_dir: Path) -> None:
    """After a run: forget its claims, removing Hydra's output dir if the run wrote elsewhere.

    Only what this launch added to Hydra's output dir goes (``.hydra/``, the directories it made),
    when the run wrote its outputs in another directory (``run_dir=`` or ``resume=``).
    """
    release_run_dir(run_dir)
    hydra_dir = _hydra_output_dir()
    claim = None if hydra_dir is None else _CLAIMS.pop(hydra_dir, None)
    if claim is not None and hydra_dir != _key(run_dir):
        claim.undo()


def abandon_run_dirs(run_dir: str | None = None) -> None:
    """After a failed run: remove what it added to its run dirs (Hydra's and ``run_dir``).

    A run dir holding a checkpoint is kept whole: the search can be resumed from it. A sweep dir
    goes too when the failed job was the only one that wrote into it.
    """
    if is_secondary_process():
        return
    paths = [_key(run_dir)] if run_dir else []
    hydra_dir = _hydra_output_dir()
    if hydra_dir is not None:
        paths.append(hydra_dir)
    for path in dict.fromkeys(paths):
        claim = _CLAIMS.pop(path, None)
        if claim is not None and not claim.holds_checkpoint():
            claim.undo()
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        sweep = _CLAIMS.get(_key(HydraConfig.get().sweep.dir))
        if sweep is not None and sweep.added() <= {SWEEP_RECORD}:
            _CLAIMS.pop(sweep.path).undo()


def _refuse(message: str) -> NoReturn:
    """End the program as a user error ends it: one line on standard error, exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


class RunDirGuard(Callback):
    """Hydra callback: claims and creates Hydra's output dir (or sweep dir) before Hydra writes."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(config.hydra.run.dir, "hydra.run.dir", resume=config.get("resume"))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(config.hydra.sweep.dir, "hydra.sweep.dir", resume=None)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """A sweep job's dir lies in the sweep dir this run claimed empty: the job made it."""
        if config.hydra.mode != RunMode.MULTIRUN or is_secondary_process():
            return
        sweep = _CLAIMS.get(_key(config.hydra.sweep.dir))
        job_dir = _key(config.hydra.runtime.output_dir)
        if sweep is None or job_dir == sweep.path or not job_dir.is_relative_to(sweep.path):
            return
        made = [job_dir, *(p for p in job_dir.parents if p.is_relative_to(sweep.path) and p != sweep.path)]
        _CLAIMS[job_dir] = RunDirClaim(path=job_dir, made=tuple(reversed(made)), before=frozenset())

    @staticmethod
    def _claim(path: str, option: str, *, resume: str | None) -> None:
        if is_secondary_process():
            return
        try:
            claim = claim_run_dir(path, option, resume=resume)
        except ConfigError as err:
            _refuse(str(err))
        try:
            claim.create()
        except OSError as err:
            _CLAIMS.pop(claim.path).undo()
            _refuse(f"cannot create the run dir {path}: {err.strerror}; choose another with "
                    f"{option}=DIR")
