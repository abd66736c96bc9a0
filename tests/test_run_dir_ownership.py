"""A failed run removes only what it created; a run dir holding files of something else is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from conftest import compose_search
from oneshot.commandline.checks import report_user_errors
from oneshot.errors import ConfigError
from oneshot.storage.rundir import RunDirClaim, RunDirGuard, abandon_run_dirs, claim_run_dir
from oneshot.train import train

OFFLINE_CIFAR = ["task=cifar10", "task.root=nonexistent", "task.download=false"]


def _tree(root: Path) -> list[str]:
    """Every path under ``root``, relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _project(root: Path) -> Path:
    """A user's project directory with a file worth keeping."""
    (root / "src").mkdir(parents=True)
    (root / "src" / "important.py").write_text("code\n")
    return root


def _start(args: list[str], cwd: Path, module: str = "oneshot.train") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def failed_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """The issue's commands and other failing runs, started together; (cwd, code, stderr) each."""
    cases = {}
    proj = _project(tmp_path_factory.mktemp("proj"))
    cases["project_as_run_dir"] = (proj, _start([*OFFLINE_CIFAR, "hydra.run.dir=."], proj))
    victim_cwd = tmp_path_factory.mktemp("victim")
    (victim_cwd / "victim").mkdir()
    (victim_cwd / "victim" / "keep.txt").write_text("keep\n")
    cases["retrain_into_victim"] = (victim_cwd, _start(["genotype=nope.json", "hydra.run.dir=victim"],
                                                       victim_cwd, "oneshot.retrain"))
    default_cwd = tmp_path_factory.mktemp("default")
    (default_cwd / "runs" / "other").mkdir(parents=True)
    (default_cwd / "runs" / "other" / "result.txt").write_text("an earlier run\n")
    cases["default_run_dir"] = (default_cwd, _start(OFFLINE_CIFAR, default_cwd))
    empty_cwd = tmp_path_factory.mktemp("empty")
    (empty_cwd / "out").mkdir()
    cases["existing_empty_dir"] = (empty_cwd, _start([*OFFLINE_CIFAR, "hydra.run.dir=out"], empty_cwd))
    sweep_cwd = tmp_path_factory.mktemp("sweep")
    cases["failed_sweep"] = (sweep_cwd, _start(["-m", *OFFLINE_CIFAR, "seed=0,1"], sweep_cwd))
    results = {}
    for name, (cwd, process) in cases.items():
        _, stderr = process.communicate(timeout=180)
        results[name] = (cwd, process.returncode, stderr)
    return results


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("[")]  # Hydra's [HYDRA] lines
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_project_dir_as_run_dir_is_refused_and_kept(failed_runs: dict) -> None:
    cwd, code, stderr = failed_runs["project_as_run_dir"]
    assert code == 2
    assert _one_error_line(stderr) == (
        "error: the run dir . already holds an entry (src); choose a new or empty directory with "
        "hydra.run.dir=DIR, so that nothing there is overwritten or removed")
    assert _tree(cwd) == ["src", "src/important.py"]  # nothing removed, nothing written
    assert (cwd / "src" / "important.py").read_text() == "code\n"


def test_retrain_into_a_dir_with_files_is_refused_and_kept(failed_runs: dict) -> None:
    cwd, code, stderr = failed_runs["retrain_into_victim"]
    assert code == 2
    assert "the run dir victim already holds an entry (keep.txt)" in _one_error_line(stderr)
    assert _tree(cwd) == ["victim", "victim/keep.txt"]


def test_failed_run_leaves_no_run_dir_and_no_empty_parent(failed_runs: dict) -> None:
    cwd, code, stderr = failed_runs["default_run_dir"]
    assert code == 2 and "no CIFAR-10 data in nonexistent" in _one_error_line(stderr)
    assert _tree(cwd) == ["runs", "runs/other", "runs/other/result.txt"]  # runs/ existed: kept


def test_failed_run_keeps_the_empty_dir_it_was_given(failed_runs: dict) -> None:
    cwd, code, stderr = failed_runs["existing_empty_dir"]
    assert code == 2 and "no CIFAR-10 data" in _one_error_line(stderr)
    assert _tree(cwd) == ["out"]  # Hydra's .hydra/ inside it removed, the dir itself kept


def test_failed_sweep_leaves_nothing(failed_runs: dict) -> None:
    cwd, code, stderr = failed_runs["failed_sweep"]
    assert code == 2 and "no CIFAR-10 data" in _one_error_line(stderr)
    assert _tree(cwd) == []  # no runs/multirun/<time>/0, no multirun.yaml, no empty runs/


def test_undo_removes_only_what_the_run_added(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "mine.txt").write_text("the user's\n")
    claim = RunDirClaim.take(tmp_path / "run" / "a" / "b")
    assert claim.made == (tmp_path / "run" / "a", tmp_path / "run" / "a" / "b")
    claim.create()
    (claim.path / "config.yaml").write_text("written by the run\n")
    (claim.path / "checkpoints").mkdir()
    claim.undo()
    assert _tree(tmp_path) == ["run", "run/mine.txt"]


def test_undo_keeps_a_parent_another_run_wrote_into(tmp_path: Path) -> None:
    claim = RunDirClaim.take(tmp_path / "runs" / "task-space-algo" / "t1")
    claim.create()
    (tmp_path / "runs" / "task-space-algo" / "t2").mkdir()  # another run, started meanwhile
    claim.undo()
    assert _tree(tmp_path) == ["runs", "runs/task-space-algo", "runs/task-space-algo/t2"]


def test_run_dir_option_with_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep\n")
    with pytest.raises(ConfigError, match=r"already holds an entry \(notes.txt\); choose a new or "
                                          r"empty directory with run_dir=DIR"):
        train(compose_search(f"run_dir={tmp_path}"))
    assert _tree(tmp_path) == ["notes.txt"]


def test_failed_run_removes_what_it_wrote_into_run_dir(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "new" / "run"  # the trainer fails after the run dir was made
    with pytest.raises(SystemExit) as exited:
        report_user_errors(train)(compose_search(f"run_dir={run_dir}", "+trainer.no_such_option=1"))
    assert exited.value.code == 2 and "no_such_option" in capsys.readouterr().err
    assert _tree(tmp_path) == []


def test_failed_run_keeps_a_run_dir_with_a_checkpoint(tmp_path: Path) -> None:
    claim = claim_run_dir(tmp_path / "run", "run_dir")
    claim.create()
    (claim.path / "checkpoints").mkdir()
    (claim.path / "checkpoints" / "last.ckpt").write_bytes(b"epoch 0")
    abandon_run_dirs(str(tmp_path / "run"))
    assert _tree(tmp_path) == ["run", "run/checkpoints", "run/checkpoints/last.ckpt"]


def _hydra_config(*overrides: str):
    with initialize_config_module("oneshot.conf.search", version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_guard_lets_a_resume_use_its_own_run_dir(search_run: dict) -> None:
    run_dir = search_run["run_dir"]
    before = _tree(run_dir)
    config = _hydra_config(f"resume={run_dir}", f"hydra.run.dir={run_dir}")
    guard = RunDirGuard()
    guard.on_run_start(config)
    abandon_run_dirs(str(run_dir))  # as a failed resume: the run dir holds a checkpoint, kept
    assert _tree(run_dir) == before
    with pytest.raises(SystemExit) as exited:  # without resume= the same dir is refused
        RunDirGuard().on_run_start(_hydra_config(f"hydra.run.dir={run_dir}"))
    assert exited.value.code == 2


def test_a_secondary_ddp_process_writes_nothing_into_the_run_dir(tmp_path: Path,
                                                                 monkeypatch) -> None:
    # Its write probe raced the first process's "run dir already holds files" check.
    from omegaconf import OmegaConf

    from oneshot.storage.rundir import resolve_run_dir

    touched: list[Path] = []
    monkeypatch.setattr(Path, "touch", lambda self, *a, **k: touched.append(self))
    monkeypatch.setenv("LOCAL_RANK", "1")
    run_dir = tmp_path / "run"
    assert resolve_run_dir(OmegaConf.create({"run_dir": str(run_dir)})) == run_dir
    assert run_dir.is_dir() and list(run_dir.iterdir()) == [] and touched == []
