"""Test-suite settings: tiny tensors run fastest, and steadiest on a shared machine, on one thread."""

import os

import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the subprocesses tests start
torch.set_num_threads(1)
