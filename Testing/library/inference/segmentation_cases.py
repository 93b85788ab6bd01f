"""Cases and models shared by the inference tests: a bright blob in a brain-like ellipsoid on a left-handed grid,
networks whose outputs are known (a blob detector, a ramp), and models loaded from them or saved to checkpoints."""

from __future__ import annotations

import copy
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from library_support import TINY_CONFIG

from BratsUNetLib.config.loading import load_config
from BratsUNetLib.inference.loaded_model import LoadedModel
from BratsUNetLib.models.checkpoint import save_checkpoint
from BratsUNetLib.models.networks import build_network

CHANNELS = ["flair", "t1", "t1ce", "t2"]
# Left-handed (first axis runs towards the left) with unequal voxel sizes: a flip or transpose bug shows.
LEFT_HANDED = np.array([[-1.0, 0, 0, 30], [0, 1.2, 0, -20], [0, 0, 1.1, 10], [0, 0, 0, 1]])
SHAPE = (44, 40, 36)
BLOB_CENTRE = (27, 14, 20)


def tiny_config(**dataset_changes) -> dict:
    """The tiny test config (32³ input), normalized, with ``dataset_changes`` applied."""
    config = copy.deepcopy(TINY_CONFIG)
    config["dataset"].update(dataset_changes)
    return load_config(config)


def ellipsoid(centre, radii, shape=SHAPE) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float64)
    offsets = (grid - np.reshape(centre, (3, 1, 1, 1))) / np.reshape(radii, (3, 1, 1, 1))
    return (offsets ** 2).sum(0) < 1


def blob_case(folder: Path, seed: int = 0, extra_blobs=(), affine=LEFT_HANDED) -> tuple[dict, np.ndarray]:
    """A bright blob in a 'brain' ellipsoid, the same in all four channels; returns (paths, blob mask)."""
    rng = np.random.default_rng(seed)
    brain = ellipsoid((22, 20, 18), (17, 15, 13))
    blob = ellipsoid(BLOB_CENTRE, (4, 4, 4))
    for centre, radius in extra_blobs:
        blob |= ellipsoid(centre, (radius,) * 3)
    image = np.where(brain, 100.0, 0.0) + np.where(blob, 400.0, 0.0) + rng.normal(0, 3, SHAPE) * brain
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in CHANNELS:
        paths[name] = folder / f"case_{name}.nii.gz"
        nib.save(nib.Nifti1Image(image.astype(np.float32), affine), paths[name])
    return paths, blob


class BlobDetector(torch.nn.Module):
    """Three identical WT/TC/ET logits: high where the (z-scored) input channel is far above the mean."""

    def __init__(self, channel: int = 0):
        super().__init__()
        self.channel = channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20 * (x[:, self.channel:self.channel + 1] - 3.0).repeat(1, 3, 1, 1, 1)


class Ramp(torch.nn.Module):
    """Logits that grow along every spatial axis whatever the input: not mirror-symmetric."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grids = torch.meshgrid(*[torch.linspace(-1, 1, n) for n in x.shape[2:]], indexing="ij")
        return (3 * (grids[0] + 2 * grids[1] + 3 * grids[2]))[None, None].repeat(x.shape[0], 3, 1, 1, 1)


def model_from(network: torch.nn.Module, config: dict, channels=CHANNELS) -> LoadedModel:
    """``network`` on the CPU as if loaded from a checkpoint of ``config`` taking ``channels``."""
    return LoadedModel(Path("test.pth"), network.eval(), {"config": config, "channels": channels}, torch.device("cpu"))


def saved_model(path: Path, config: dict, seed: int, channels=CHANNELS) -> Path:
    """A checkpoint at ``path`` of ``config``'s network with weights drawn from ``seed``."""
    torch.manual_seed(seed)
    save_checkpoint(path, build_network(config["model"]), config=config, channels=channels)
    return path


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """The Dice overlap of two boolean masks."""
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())
