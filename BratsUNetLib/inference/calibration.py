"""Calibration inputs for int8 quantization: generated phantom cases through the model's own preprocessing.

Post-training quantization needs the ranges of the network's activations on inputs like the real ones. A model
does not carry its training cases, so they are made: :data:`CALIBRATION_CASES` phantoms
(:mod:`BratsUNetLib.phantoms`, the same seeds every time, so a model is always calibrated alike), preprocessed
exactly as a case to segment (crop, resize or not, normalization), then centred in the network's input shape.

NNCF runs the network with every activation it measures kept as an output at once: about
:data:`QUANTIZATION_FLOATS_PER_WIDTH` floats per input voxel per channel of the first convolution (12.5 GB for
the BraTS DynUNet at 128³, once per model). That is checked against the free memory before anything is made.
(Calibrating on patches and reshaping the quantized network back would need less, but on patches a U-Net's deep
levels see a few voxels and its instance norms other statistics: the Dice of a trained model fell by 0.15–0.45.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from monai import transforms as mt
from monai.data import MetaTensor

from BratsUNetLib.config.validation import GUIDED_EXTRA_CHANNELS
from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.hardware.memory import check_allocation
from BratsUNetLib.modalities import MODALITIES
from BratsUNetLib.phantoms.generate import generate_case

#: Phantom cases per calibration: each holds millions of voxels, so a few give stable activation ranges
#: (benchmarks/README.md measures the Dice change of int8 with this setting).
CALIBRATION_CASES = 4
CALIBRATION_SEED = 20261207
#: Measured: the peak of NNCF's quantization of the BraTS DynUNet (first convolution 32 channels) at 128³ was
#: 12.5 GB, 46 floats per voxel per channel; with the ONNX model and the phantoms, 48 covers it.
QUANTIZATION_FLOATS_PER_WIDTH = 48


class CalibratedModel(Protocol):
    """What calibration reads of a :class:`~BratsUNetLib.inference.loaded_model.LoadedModel` (which imports this
    module, hence a protocol rather than the class)."""

    path: Path
    network: torch.nn.Module
    channels: tuple[str, ...]
    dataset: dict
    guidance: dict | None

    def transforms(self, native: bool) -> mt.Compose: ...


def quantization_bytes(network: torch.nn.Module, shape: Sequence[int]) -> int:
    """Estimated peak memory in bytes of NNCF's quantization of ``network`` for inputs ``(1, C, X, Y, Z)``."""
    width = next((module.out_channels for module in network.modules()
                  if isinstance(module, (torch.nn.Conv3d, torch.nn.ConvTranspose3d))), 0)
    return 4 * int(np.prod([int(size) for size in shape[2:]])) * QUANTIZATION_FLOATS_PER_WIDTH * width


def calibration_inputs(model: CalibratedModel, shape: Sequence[int], cases: int = CALIBRATION_CASES) -> list[np.ndarray]:
    """``cases`` network inputs ``(1, C, X, Y, Z)`` float32 of ``shape`` made from phantoms for ``model``.

    Raises :class:`BratsUNetError` when the model takes an image that phantoms do not have, or when quantizing at
    ``shape`` would need more memory than is free.
    """
    shape = tuple(int(size) for size in shape)
    spatial = shape[2:]
    check_allocation(quantization_bytes(model.network, shape), f"Quantizing this network to int8 for "
                     f"{'×'.join(map(str, spatial))} inputs (once; the result is cached)",
                     "close other programs, quantize on a machine with more memory (copy the cache folder), or use "
                     "--precision bf16 or fp32")
    unknown = [name for name in model.channels if name not in MODALITIES]
    if unknown:
        raise BratsUNetError(f"Model '{model.path}' takes {', '.join(unknown)}, which the calibration phantoms for "
                             "int8 do not have; use --precision fp32 or bf16.")
    desired = model.dataset.get("desired_shape")
    resized = bool(desired) and not model.dataset.get("random_crop") and tuple(desired) == spatial
    transforms = model.transforms(native=not resized)
    fit = mt.ResizeWithPadOrCrop(spatial_size=spatial)  # native crops: centred in the input, zeros around
    inputs = []
    for index in range(cases):
        case = generate_case(spatial, seed=(CALIBRATION_SEED, index))
        image = np.stack([case.images[name] for name in model.channels]).astype(np.float32)
        preprocessed = transforms({"image": MetaTensor(torch.from_numpy(image),
                                                       affine=torch.as_tensor(case.affine))})["image"]
        array = fit(preprocessed.as_tensor()).numpy().astype(np.float32)
        if model.guidance is not None:  # automatic input of a guided model: no prior, no clicks
            array = np.concatenate([array, np.zeros((GUIDED_EXTRA_CHANNELS, *spatial), np.float32)])
        inputs.append(np.ascontiguousarray(array[None]))
    return inputs
