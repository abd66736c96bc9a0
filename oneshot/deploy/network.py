"""The trained network of a retrain run dir, ready to export: weights, input shape, class names.

The exported model takes float RGB images in [0, 1] (``[batch, C, H, W]`` at the training
resolution) and returns class logits: the task's normalization (mean, std) is its first step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import OmegaConf
from torch import nn

from oneshot.errors import ConfigError

CHECKPOINT = Path("checkpoints") / "last.ckpt"


class DeployedClassifier(nn.Module):
    """``(x - mean) / std`` then the network's logits (its auxiliary output is dropped)."""

    def __init__(self, network: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.network = network
        for name, values in (("mean", mean), ("std", std)):
            channels = torch.tensor(list(values), dtype=torch.float32)
            self.register_buffer(name, channels.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network((x - self.mean) / self.std)[0]


@dataclass(frozen=True)
class TrainedNetwork:
    """A retrain run's network in eval mode and what a deployment needs to know about it."""

    model: DeployedClassifier
    input_shape: tuple[int, int, int]  # (C, H, W) of one image
    class_names: tuple[str, ...]
    meta: dict[str, Any]  # space, genotype, task, test accuracy, ... (written into the export)


def load_trained_network(run_dir: str | Path) -> TrainedNetwork:
    """The network ``python -m oneshot.retrain`` trained in ``run_dir``, with its final weights."""
    from oneshot.storage.genotypes import load_checkpoint, load_genotype
    from supernets.spaces import create_network

    run_dir = Path(run_dir)
    config, metrics = _read_run(run_dir)
    checkpoint = load_checkpoint(run_dir / CHECKPOINT)
    hparams = checkpoint.get("hyper_parameters", {})
    if "num_classes" not in hparams or "state_dict" not in checkpoint:
        raise ConfigError(f"'{run_dir / CHECKPOINT}' is not a retrain checkpoint; export the run "
                          "dir of `python -m oneshot.retrain`")
    loaded = load_genotype(run_dir / "genotype.json")  # the genotype the run trained
    num_classes = int(hparams["num_classes"])
    network = create_network(loaded.space, loaded.genotype, num_classes=num_classes,
                             space_options=loaded.meta.get("space_options"),
                             **dict(config.get("network") or {}))
    prefix = "network."
    weights = {key[len(prefix):]: value for key, value in checkpoint["state_dict"].items()
               if key.startswith(prefix)}
    try:
        network.load_state_dict(weights)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise ConfigError(f"the weights in '{run_dir / CHECKPOINT}' do not fit its network "
                          f"({first}); was the run dir's config.yaml edited?") from None
    task = dict(config.get("task") or {})
    class_names, mean, std = _task_facts(run_dir, task, num_classes)
    model = DeployedClassifier(network, mean, std).eval()
    channels, height, width = (int(v) for v in metrics["input_size"][1:])
    input_shape = (channels, height, width)
    meta = {"space": loaded.space, "genotype": loaded.genotype.to_dict(),
            "genotype_text": str(loaded.genotype), "task": task.get("name"),
            "test_acc": metrics.get("test_acc"), "input_size": [1, *input_shape],
            "input": "float32 RGB in [0, 1], [batch, C, H, W]; normalized inside the model",
            "mean": list(mean), "std": list(std), "source": str(run_dir)}
    return TrainedNetwork(model=model, input_shape=input_shape, class_names=class_names, meta=meta)


def _read_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``config.yaml`` and ``metrics.json`` of a finished retrain run; else a one-line error."""
    if not run_dir.is_dir():
        raise ConfigError(f"'{run_dir}' is not a directory; pass the run dir of "
                          "`python -m oneshot.retrain`")
    config_path, metrics_path = run_dir / "config.yaml", run_dir / "metrics.json"
    if not config_path.is_file():
        raise ConfigError(f"'{run_dir}' has no config.yaml; pass the run dir of "
                          "`python -m oneshot.retrain`")
    config = OmegaConf.to_container(OmegaConf.load(config_path), resolve=True)
    if not isinstance(config, dict) or "genotype" not in config:
        raise ConfigError(f"'{run_dir}' is a search run dir; retrain its genotype first "
                          f"(`python -m oneshot.retrain genotype={run_dir}`) and export that "
                          "run dir")
    if not metrics_path.is_file() or not (run_dir / CHECKPOINT).is_file():
        raise ConfigError(f"'{run_dir}' holds no finished retrain (metrics.json and {CHECKPOINT} "
                          "are written when `python -m oneshot.retrain` ends); export it then")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    return config, metrics


def _task_facts(run_dir: Path, task: dict[str, Any], num_classes: int
                ) -> tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...]]:
    """Class names (``classes.json`` of the run dir, else the task's) and the task's mean and
    std (the config's, as ``task=imagefolder`` may give them, else the loaded task's)."""
    from oneshot.storage.classes import read_classes

    names, mean, std = read_classes(run_dir), task.get("mean"), task.get("std")
    if names is None or mean is None or std is None:
        dataset = _load_task(task)
        names, mean, std = names or dataset.classes, mean or dataset.mean, std or dataset.std
    if len(names) != num_classes:
        raise ConfigError(f"the run dir names {len(names)} classes but its network has "
                          f"{num_classes} outputs")
    names = tuple(names)
    if names == tuple(str(label) for label in range(num_classes)):
        names = _known_names(task, num_classes)  # a task that records no names (CIFAR-10)
    return names, tuple(map(float, mean)), tuple(map(float, std))


def _load_task(task: dict[str, Any]) -> Any:
    """The run's task (for its normalization), loaded as retraining loaded it, never downloaded."""
    from oneshot.train import TASK_SUBSET_KEYS
    from tasks import load_task

    options = {k: v for k, v in task.items() if k not in TASK_SUBSET_KEYS}
    if "download" in options:
        options["download"] = False
    try:
        return load_task(task["name"], **options)
    except Exception as err:  # the data may have moved since: say what the export needed
        raise ConfigError(f"the export needs the task's normalization (mean, std), but task "
                          f"'{task.get('name')}' cannot be loaded from the run dir's config "
                          f"({str(err).splitlines()[0]}); run the export where the retrain "
                          "ran") from None


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


def _known_names(task: dict[str, Any], num_classes: int) -> tuple[str, ...]:
    """CIFAR-10's class names; else the label numbers as text."""
    if task.get("name") == "cifar10" and num_classes == len(CIFAR10_CLASSES):
        return CIFAR10_CLASSES
    return tuple(str(label) for label in range(num_classes))
