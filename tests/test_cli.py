"""Bad input to ``oneshot.train``: a one-line error, exit code 2, and no run dir left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig

from conftest import TINY_SEARCH, compose_search
from oneshot.commandline.checks import BROKEN_PIPE_EXIT, config_groups, report_user_errors, validate_overrides
from oneshot.errors import ConfigError
from oneshot.errors import NonFiniteLossError
from oneshot.train import check_config, train
from tasks import TaskError


def _validate(*args: str) -> DictConfig:
    return validate_overrides("oneshot.conf.search", "train", list(args))


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


def test_config_groups_list_every_option() -> None:
    groups = config_groups("oneshot.conf.search")
    assert groups["task"] == ["cifar10", "cifar100", "imagefolder", "imagenet16", "synthetic"]
    assert "darts" in groups["space"] and "darts" in groups["algorithm"]
    assert groups["space"][:3] == ["darts", "nb201", "proxyless"]
    assert "quick" in groups["experiment"]


def test_valid_overrides_compose() -> None:
    cfg = _validate("task=synthetic", "space.channels=4", "seed=3,4", "experiment=quick",
                    "hydra.run.dir=/tmp/x")
    assert cfg.task.name == "synthetic" and cfg.space.channels == 4
    assert cfg.seed == 3  # a sweep is checked with its first value
    assert cfg.space.layers == 5  # from the quick experiment


@pytest.mark.parametrize("group, bad", [
    ("task", "foo"), ("space", "nasbench"), ("algorithm", "no_such"), ("experiment", "slow")])
def test_unknown_group_option_lists_choices(group: str, bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        _validate(f"{group}={bad}")
    choices = ", ".join(config_groups("oneshot.conf.search")[group])
    assert _one_line(info) == f"unknown {group} '{bad}'; choose one of: {choices}"
    assert "darts" in choices or group in ("task", "experiment")


@pytest.mark.parametrize("override, where, key", [
    ("epochs=3", "the top level", "trainer"),
    ("data.bs=3", "data", "batch_size"),
    ("space.width=3", "space", "channels"),
])
def test_unknown_key_lists_keys_nearby(override: str, where: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        _validate(override)
    message = _one_line(info)
    name = override.split("=")[0]
    assert message.startswith(f"unknown config key '{name}'; keys under {where}: ")
    assert key in message and f"+{name}=" in message


def test_malformed_override() -> None:
    with pytest.raises(ConfigError) as info:
        _validate("seed=[1")
    assert "key=value" in _one_line(info)


@pytest.mark.parametrize("override, message", [
    ("data.batch_size=0", "data.batch_size must be a positive integer, got 0"),
    ("data.batch_size=-8", "data.batch_size must be a positive integer, got -8"),
    ("data.eval_batch_size=0", "data.eval_batch_size must be a positive integer, got 0"),
    ("trainer.max_epochs=0", "trainer.max_epochs must be a positive integer, got 0"),
    ("trainer.max_epochs=-1", "trainer.max_epochs must be a positive integer, got -1"),
    ("task.subset=1", "task.subset must be an integer >= 2 or null, got 1"),
    ("seed=abc", "seed must be an integer in [0, 4294967295], got 'abc'"),
])
def test_bad_values_are_rejected_before_the_run(override: str, message: str,
                                                tmp_path: Path) -> None:
    cfg = compose_search(f"run_dir={tmp_path / 'run'}", override)
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    assert _one_line(info) == message
    with pytest.raises(ConfigError):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_subset_larger_than_the_data(tmp_path: Path) -> None:
    with pytest.raises(TaskError) as info:
        train(compose_search(f"run_dir={tmp_path / 'run'}", "task.subset=100"))
    assert "subset=100 is out of range; choose 2 <= subset <= 64" in _one_line(info)
    assert not (tmp_path / "run").exists()


def test_unwritable_run_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError) as info:
        train(compose_search(f"run_dir={blocker / 'run'}"))
    message = _one_line(info)
    assert message.startswith(f"cannot write to the run dir {blocker / 'run'}")
    assert "run_dir=DIR" in message


def test_missing_cifar_data_offline(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = compose_search(f"run_dir={tmp_path / 'run'}", "task=cifar10", f"task.root={empty}",
                         "task.download=false", base=())
    with pytest.raises(TaskError) as info:
        train(cfg)
    message = _one_line(info)
    assert str(empty) in message and "download" in message
    assert not (tmp_path / "run").exists()


def test_unknown_synthetic_option(tmp_path: Path) -> None:
    with pytest.raises(TaskError) as info:
        train(compose_search(f"run_dir={tmp_path / 'run'}", "+task.colour=1"))
    assert "unknown option(s) for task 'synthetic': colour" in _one_line(info)


@pytest.mark.parametrize("error", [ConfigError("bad value"), TaskError("bad value"),
                                   NonFiniteLossError("bad value")])
def test_user_errors_print_one_line_and_exit_2(error: Exception, capsys) -> None:
    def job(cfg):
        raise error

    with pytest.raises(SystemExit) as info:
        report_user_errors(job)(None)
    assert info.value.code == 2
    assert capsys.readouterr().err == "error: bad value\n"


def test_only_the_first_ddp_process_prints_the_error(capsys, monkeypatch) -> None:
    def job(cfg):
        raise ConfigError("ranks disagree")

    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(SystemExit) as info:
        report_user_errors(job)(None)
    assert info.value.code == 2 and capsys.readouterr().err == ""


def test_other_errors_are_not_hidden() -> None:
    def job(cfg):
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        report_user_errors(job)(None)


SUBPROCESS_CASES = {
    # caught by the override check before Hydra starts
    "unknown_task": (["task=foo"], "error: unknown task 'foo'; choose one of: "),
    # caught inside the Hydra job, after Hydra made its run dir (which must be removed again)
    "cifar_offline": (["task=cifar10", "task.root=empty", "task.download=false"],
                      "error: no CIFAR-10 data in "),
}


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Every subprocess case, started together (each mostly waits on imports)."""
    started = {}
    for name, (args, _) in SUBPROCESS_CASES.items():
        cwd = tmp_path_factory.mktemp(name)
        (cwd / "empty").mkdir()
        command = [sys.executable, "-m", "oneshot.train", *args, f"hydra.run.dir={cwd / 'run'}"]
        started[name] = (cwd, subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True))
    results = {}
    for name, (cwd, process) in started.items():
        stdout, stderr = process.communicate(timeout=120)
        results[name] = (cwd, process.returncode, stdout, stderr)
    return results


@pytest.mark.parametrize("case", list(SUBPROCESS_CASES))
def test_command_line_error_exits_2_with_one_line(case: str, cli_runs: dict) -> None:
    cwd, code, stdout, stderr = cli_runs[case]
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(SUBPROCESS_CASES[case][1])
    assert sorted(p.name for p in cwd.iterdir()) == ["empty"]  # no run dir, no runs/ left behind


CHECKED_BEFORE_TORCH = {
    "train_typo": ("oneshot.train", ["space=dartz"], 2,
                   "error: unknown space 'dartz'; choose one of: "),
    "train_help": ("oneshot.train", ["--help"], 0, ""),
    "retrain_typo": ("oneshot.retrain", ["genotype=DARTS_V2", "task=cifar1"], 2,
                     "error: unknown task 'cifar1'; choose one of: "),
    "export_help": ("oneshot.export", ["--help"], 0, ""),
    "latency_typo": ("oneshot.latency", ["space=proxyles"], 2, "error: unknown "),
}
HEAVY_MODULES = ("torch", "pytorch_lightning", "lightning_fabric", "torchvision", "matplotlib")
ENTRY_PROBE = """
import sys
sys.argv = ["prog", *sys.argv[1:]]
from {module} import main
try:
    code = main()
except SystemExit as exit:
    code = exit.code
print("exit", code or 0, file=sys.stderr)
print("heavy", sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def entry_probes() -> dict[str, subprocess.CompletedProcess]:
    """Each entry point's main() run with a typo or --help, started together."""
    started = {name: subprocess.Popen(
        [sys.executable, "-c", ENTRY_PROBE.format(module=module, heavy=HEAVY_MODULES), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, (module, args, _, _) in CHECKED_BEFORE_TORCH.items()}
    return {name: (process.communicate(timeout=120), process.returncode)
            for name, process in started.items()}


@pytest.mark.parametrize("case", list(CHECKED_BEFORE_TORCH))
def test_typos_and_help_are_answered_before_torch_is_imported(case: str, entry_probes: dict) -> None:
    (stdout, stderr), returncode = entry_probes[case]
    _, _, code, message = CHECKED_BEFORE_TORCH[case]
    assert returncode == 0, stderr
    lines = stderr.strip().splitlines()
    assert lines[-2:] == [f"exit {code}", "heavy []"], stderr
    if message:
        assert len(lines) == 3 and lines[0].startswith(message)
    else:
        assert "usage" in stdout.lower() or "powered by hydra" in stdout.lower()


def _closed_pipe() -> int:
    """The write end of a pipe whose reader has already gone (as after ``| head -c 1``)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


@pytest.mark.parametrize("command", [
    ["oneshot.export", "DARTS_V2"],
    ["oneshot.export", "DARTS_V2", "--format", "darts"],
    ["oneshot.train", "--help"],
])
def test_closed_standard_output_ends_quietly(command: list[str]) -> None:
    write_end = _closed_pipe()
    try:
        proc = subprocess.run([sys.executable, "-m", *command], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == BROKEN_PIPE_EXIT
    assert proc.stderr == ""  # no "cannot write 'None'", no traceback, no "Exception ignored"


def test_closed_standard_output_after_a_search(tmp_path: Path) -> None:
    write_end = _closed_pipe()
    try:
        proc = subprocess.run([sys.executable, "-m", "oneshot.train", *TINY_SEARCH,
                               "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}"],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300,
                              cwd=tmp_path)
    finally:
        os.close(write_end)
    assert proc.returncode == BROKEN_PIPE_EXIT, proc.stderr[-3000:]
    assert "Error" not in proc.stderr and "Exception" not in proc.stderr
    assert (tmp_path / "run" / "genotype.json").is_file()  # the finished search is kept
