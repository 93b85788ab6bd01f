"""Settings shared by every test: tests run on the CPU with few threads so they stay fast and repeatable."""

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import torch  # noqa: E402  (after the environment is set)

torch.set_num_threads(min(2, os.cpu_count() or 1))
