"""What the module's self-test (and the pytest suite) needs besides a scene: the sample case and a small model to
segment it with. Both need the library's packages: call them only where they are installed."""

from __future__ import annotations

import os
from pathlib import Path

from BratsUNetSlicer import sample_data, scene_io
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


def sample_case_and_model(folder: str | os.PathLike) -> tuple[dict[str, object], Path]:
    """The sample case loaded into the scene (:func:`BratsUNetSlicer.sample_data.load_sample`: modality -> volume
    node, and ``segmentation``, its reference) and an untrained :func:`small_checkpoint` in ``folder``."""
    nodes = sample_data.load_sample()
    return nodes, small_checkpoint(Path(folder) / "model.pth")


def segment_table_rows(table: object) -> dict[str, float]:
    """A volumes table node's rows: region -> volume in mL."""
    content = table.GetTable()
    return {content.GetValue(row, 0).ToString(): content.GetValue(row, 1).ToDouble()
            for row in range(content.GetNumberOfRows())}
