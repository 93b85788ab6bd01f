"""What the module's self-test (and the pytest suite) needs besides a scene: a small model to segment with."""

from __future__ import annotations

import os
from pathlib import Path

from BratsUNetSlicer import scene_io
from BratsUNetSlicer.training import TrainingOptions, training_config


def small_checkpoint(path: str | os.PathLike, patch_size: int = 32, seed: int = 0) -> Path:
    """Save an untrained "small" DynUNet (random weights from ``seed``) as a BratsUNet checkpoint.

    Its outputs are meaningless but deterministic, which is all a test comparing two ways of running the same
    model needs. Imports torch: call it only where torch is installed.
    """
    # Imported on use: the panel's self-test runs only once torch is installed.
    import torch

    from BratsUNetLib.models.checkpoint import save_checkpoint
    from BratsUNetLib.models.networks import build_network

    config = training_config(TrainingOptions(network="small", patch_size=patch_size), [], [])
    torch.manual_seed(seed)
    network = build_network(config["model"])
    return save_checkpoint(path, network, config=config, channels=scene_io.MODALITIES)
