"""What the README tells a new user to type or to look for is what oneshot does."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import compose_search
from oneshot.commandline.checks import validate_overrides
from oneshot.storage.genotypes import load_genotype
from oneshot.train import train
from supernets.darts.published import get_published

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _code_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.DOTALL)


def test_install_shows_the_cpu_only_wheels_before_the_editable_install() -> None:
    cpu = "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu\n"
    (block,) = [b for b in _code_blocks() if cpu in b]
    assert "pip install -e ." in block.split(cpu, 1)[1]


def test_retrain_example_quotes_the_darts_text_through_the_override_parser() -> None:
    (line,) = [line for b in _code_blocks() for line in b.splitlines()
               if line.startswith('python -m oneshot.retrain "genotype=')]
    argv = shlex.split(line)  # what the shell passes
    assert argv[:3] == ["python", "-m", "oneshot.retrain"]
    cfg = validate_overrides("oneshot.conf.retrain", "retrain", argv[3:])
    darts_v2 = get_published("DARTS_V2")[0]
    assert cfg.genotype == str(darts_v2)  # the full text, quotes and brackets included
    assert load_genotype(cfg.genotype).genotype == darts_v2


def test_tensorboard_tags_are_the_ones_a_search_logs(tmp_path) -> None:
    bullet = README.split("Watch a search with `tensorboard --logdir runs`. It shows:\n\n", 1)[1]
    bullet = bullet.split("\n- ", 1)[0]
    documented = set(re.findall(r"`((?:train|val)/\w+|epoch)`", bullet))
    train(compose_search(f"run_dir={tmp_path}", "trainer.max_epochs=1",
                         "trainer.log_every_n_steps=1"))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    logged = {tag for tag in events.Tags()["scalars"] if not tag.startswith("alpha/")}
    assert documented == logged
