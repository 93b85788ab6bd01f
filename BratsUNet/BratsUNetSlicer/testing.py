"""What the module's self-test (and the pytest suite) needs besides a scene: a generated case and a small model to
segment it with. Both need torch: call them only where it is installed."""

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


def generated_case(folder: str | os.PathLike, seed: int = 3) -> tuple[dict[str, object], Path]:
    """A 32³ phantom case written to ``folder`` and loaded into the scene (modality -> volume node), and an
    untrained :func:`small_checkpoint` beside it."""
    # Imported on use, as torch in small_checkpoint.
    from BratsUNetLib.phantoms.generate import generate_case, write_case

    name = "BraTS20_SelfTest_001"
    paths = write_case(generate_case(shape=(32, 32, 32), seed=seed), folder, name)
    volumes = {modality: scene_io.load_volume(paths[modality], f"{name}_{modality}")
               for modality in scene_io.MODALITIES}
    return volumes, small_checkpoint(Path(folder) / "model.pth")
