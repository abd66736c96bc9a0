"""Command-line plumbing shared by the Hydra entry points: override checks and one-line errors."""

from __future__ import annotations

import errno
import functools
import os
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf

from oneshot import errors
from oneshot.commandline.schema import check_options
from oneshot.errors import ConfigError
from oneshot.storage.rundir import abandon_run_dirs, is_secondary_process
from oneshot.commandline.spaces import register_space_configs, target_as_choice

SHARED_CONFIG_MODULE = "oneshot.conf"  # groups every entry point uses (task)
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM}
BROKEN_PIPE_EXIT = 141  # 128 + SIGPIPE: what a shell reports for a program whose reader went away


def config_groups(config_module: str, *, stored: bool = True) -> dict[str, list[str]]:
    """Each config group of an entry point (``task``, ``space``, ...) with its option names: the
    YAML files and, with ``stored``, the nodes in Hydra's ConfigStore (plugin spaces, class
    paths)."""
    groups: dict[str, list[str]] = {}
    for module in (SHARED_CONFIG_MODULE, config_module):
        for group in resources.files(module).iterdir():
            options = sorted(f.name[:-5] for f in group.iterdir() if f.name.endswith(".yaml")) \
                if group.is_dir() else []
            if options:
                groups[group.name] = options
    store = ConfigStore.instance()
    for group, options in groups.items() if stored else ():
        stored = store.repo.get(group, {})
        options += [name[:-5] for name in stored if name.endswith(".yaml")]
        groups[group] = sorted(set(options))
    return groups


def _first_values(args: Sequence[str], *, keep_hydra: bool = False) -> list[str]:
    """Overrides with every sweep (``seed=0,1,2``) replaced by its first value; Hydra's own
    (``hydra.run.dir=...``) dropped unless ``keep_hydra``."""
    plain = []
    try:
        parsed = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
    except HydraException as err:
        raise ConfigError(str(err).splitlines()[0] + "; write overrides as key=value") from None
    for override in parsed:
        if override.key_or_group.startswith("hydra") and not keep_hydra:
            continue
        if override.is_sweep_override():
            plain.append(f"{override.get_key_element()}={next(iter(override.sweep_string_iterator()))}")
        else:
            plain.append(override.input_line)
    return plain


def _keys_near(cfg: DictConfig, dotted_key: str) -> tuple[str, list[str]]:
    """The deepest existing node on ``dotted_key`` and the keys it has."""
    node: Any = cfg
    parts = dotted_key.lstrip("+~").split(".")
    prefix: list[str] = []
    for part in parts[:-1]:
        if not isinstance(node, DictConfig) or part not in node:
            break
        node = node[part]
        prefix.append(part)
    keys = sorted(str(k) for k in node.keys()) if isinstance(node, DictConfig) else []
    return ".".join(prefix) or "the top level", keys


def _composed_without(config_name: str, overrides: list[str], bad: str,
                      groups: dict[str, list[str]]) -> DictConfig:
    """The config the user composed, less the override ``bad``: with every other override, or,
    if another one fails too, with the group choices only (``algorithm=gdas``, ``space=nb201``)."""
    rest = [o for o in overrides if o != bad]
    try:
        return compose(config_name, overrides=rest)
    except HydraException:
        return compose(config_name, overrides=[o for o in rest
                                               if o.partition("=")[0].lstrip("+~") in groups])


def validate_overrides(config_module: str, config_name: str, args: Sequence[str]) -> DictConfig:
    """Compose ``config_name`` with the command-line ``args`` and check every option's type and
    range (``oneshot.commandline.schema``); a bad override or value raises ConfigError."""
    overrides = _first_values(args)
    groups = config_groups(config_module)
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if key in groups and value not in groups[key] and value != "null":
            raise ConfigError(f"unknown {key} '{value}'; choose one of: {', '.join(groups[key])}")
    with initialize_config_module(config_module=config_module, version_base="1.3"):
        try:
            cfg = compose(config_name, overrides=overrides)
        except MissingConfigException as err:
            raise ConfigError(f"unknown config '{err.missing_cfg_file}'; choose one of: "
                              f"{', '.join(err.options or [])}") from None
        except ConfigCompositionException as err:
            bad = next((o for o in overrides if f"'{o.split('=')[0]}'" in str(err)), None)
            if bad is None:
                raise ConfigError(str(err).splitlines()[0]) from None
            key = bad.split("=")[0]
            where, keys = _keys_near(_composed_without(config_name, overrides, bad, groups), key)
            raise ConfigError(f"unknown config key '{key}'; keys under {where}: {', '.join(keys)} "
                              f"(use +{key}=... to add a new one)") from None
    check_options(cfg, config_name)
    return cfg


def unwritable_reason(directory: Path) -> str | None:
    """Why ``directory`` (with any missing parents) cannot be made and written, or ``None``.

    Tries it: makes and removes an empty temporary directory in the nearest existing ancestor
    (permissions alone do not tell, e.g. for root under ``/proc`` or on a read-only mount).
    """
    existing = directory.expanduser().absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".oneshot-write-test-", dir=existing))
    except OSError as err:
        return f"cannot create a directory in {existing} ({err.strerror})"
    return None


def check_output_file(path: Path, option: str) -> None:
    """Refuse an output file ``path`` (set by ``option``) that cannot be written, in one line."""
    reason = f"{path} is a directory" if path.is_dir() else unwritable_reason(path.parent)
    if reason is not None:
        raise ConfigError(f"cannot write {option}={path}: {reason}; choose another path with "
                          f"{option}=PATH")


def hydra_output_dir(config_module: str, config_name: str,
                     args: Sequence[str]) -> tuple[str, Path]:
    """The directory Hydra makes for this command line, resolved, with the option that sets it:
    ``hydra.run.dir``, or ``hydra.sweep.dir`` for a multirun (``-m``)."""
    option = "hydra.sweep.dir" if any(a in ("-m", "--multirun") for a in args) else "hydra.run.dir"
    with initialize_config_module(config_module=config_module, version_base="1.3"):
        try:
            cfg = compose(config_name, overrides=_first_values(args, keep_hydra=True),
                          return_hydra_config=True)
        except HydraException as err:  # a bad hydra.* override
            raise ConfigError(str(err).splitlines()[0]) from None
    return option, Path(str(OmegaConf.select(cfg, option)))


def check_output_dir(config_module: str, config_name: str, args: Sequence[str]) -> None:
    """Refuse, in one line, a Hydra run (or sweep) dir that cannot be made and written, before
    Hydra tries to make it."""
    option, directory = hydra_output_dir(config_module, config_name, args)
    reason = unwritable_reason(directory)
    if reason is not None:
        raise ConfigError(f"cannot write the run dir {option}={directory}: {reason}; choose "
                          f"another with {option}=DIR")


def report_user_errors(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Run a Hydra task so a user error prints one line, exits 2, and takes back what the run
    wrote (``oneshot.storage.rundir``: only what it created, and nothing from a run dir with a
    checkpoint); any other exception takes it back too, then propagates with its traceback."""

    @functools.wraps(task)
    def wrapper(cfg: DictConfig) -> Any:
        try:
            result = task(cfg)
            flush_stdout()
            return result
        except errors.USER_ERRORS as err:
            message = str(err)
        except BrokenPipeError:
            abandon_run_dirs(_run_dir_option(cfg))
            exit_quietly_on_broken_pipe()
        except OSError as err:
            if err.errno not in WRITE_ERRNOS:
                abandon_run_dirs(_run_dir_option(cfg))
                raise
            message = (f"cannot write {err.filename or 'the run dir'}: {err.strerror}; free some space "
                       "or choose another run dir with hydra.run.dir=DIR")
        except Exception:  # a crash (with its traceback) keeps only a checkpoint to resume from
            abandon_run_dirs(_run_dir_option(cfg))
            raise
        if not is_secondary_process():  # every DDP rank stops; the first one says why
            print(f"error: {message}", file=sys.stderr)
        abandon_run_dirs(_run_dir_option(cfg))
        sys.exit(2)

    return wrapper


def _run_dir_option(cfg: DictConfig | None) -> str | None:
    """The ``run_dir=`` of a task's config, if it has one."""
    return cfg.get("run_dir") if isinstance(cfg, DictConfig) else None


def flush_stdout() -> None:
    """Write out what is buffered for standard output (where a closed pipe shows up)."""
    if sys.stdout is not None:
        sys.stdout.flush()


def exit_quietly_on_broken_pipe() -> NoReturn:
    """End the program whose reader went away (``... | head -c 1``) as SIGPIPE would: no message,
    exit code 141. Standard output is pointed at /dev/null so the final flush fails no more."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(BROKEN_PIPE_EXIT)


def quiet_on_broken_pipe(main: Callable[..., int | None]) -> Callable[..., int | None]:
    """Wrap a console entry point so a closed standard output ends it quietly (exit code 141)."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> int | None:
        try:
            code = main(*args, **kwargs)
            flush_stdout()
            return code
        except BrokenPipeError:
            exit_quietly_on_broken_pipe()

    return wrapper


def prepare_spaces(argv: Sequence[str]) -> list[str]:
    """Config nodes for installed spaces and chosen class paths (``oneshot.commandline.spaces``);
    returns ``argv`` with ``space._target_=X`` written as ``space=X``. A space that cannot be
    loaded is a ConfigError."""
    args = target_as_choice(argv)
    try:
        register_space_configs(args, registered=False)
    except errors.USER_ERRORS as err:
        raise ConfigError(str(err)) from None
    return args


def run_cli(hydra_entry: Callable[[], Any], config_module: str, config_name: str,
            argv: Sequence[str]) -> None:
    """Check the overrides in ``argv`` first (one-line error, exit 2), then start Hydra.

    ``space._target_=X`` reaches Hydra as the equivalent ``space=X`` (``sys.argv`` is rewritten).
    """
    try:
        argv = prepare_spaces(argv)
        if list(sys.argv[1:]) != list(argv):
            sys.argv[1:] = argv
        validate_overrides(config_module, config_name, argv)
        check_output_dir(config_module, config_name, argv)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    hydra_entry()
