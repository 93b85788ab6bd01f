"""Settings shared by every test: tests run on the CPU with few threads so they stay fast and repeatable."""

import os
import sys
import tempfile
from pathlib import Path

# Modules shared by the test folders. Not Testing/ itself: its slicer/ folder would join slicer-core's package.
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Exported, quantized and compiled networks of the tests' models go to a folder of this run, not the user's cache
# (every process the tests start, the Slicer worker included, inherits it).
os.environ.setdefault("BRATSUNET_CACHE_DIR", tempfile.mkdtemp(prefix="bratsunet-test-cache-"))

import torch  # noqa: E402  (after the environment is set)

torch.set_num_threads(min(2, os.cpu_count() or 1))
