"""A Hydra callback for tests: each job writes the torch CPU threads it ran with into its dir."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class ThreadProbe(Callback):
    """Writes ``threads.json`` (torch's threads and ``OMP_NUM_THREADS``) into the job's dir."""

    def on_job_end(self, config: DictConfig, **kwargs: Any) -> None:
        import torch

        record = {"torch": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS")}
        (Path(config.hydra.runtime.output_dir) / "threads.json").write_text(json.dumps(record))
