"""The tiny network's training config that library and reliability tests build models and cases from."""

from __future__ import annotations

import copy


def tiny_config(desired_shape: int, **training) -> dict:
    """A DynUNet small enough that a forward pass on 32³ takes milliseconds, with the preprocessing of the
    original's BraTS example (foreground crop, resize to ``desired_shape``³, z-score) so that inference exercises
    every invertible step; ``training`` adds keys to the training block. A new dict on every call."""
    return copy.deepcopy({
        "model": {"name": "DynUNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 3,
                  "kernel_size": [3, 3, 3], "strides": [1, 2, 2], "upsample_kernel_size": [2, 2],
                  "filters": [4, 8, 16]},
        "optimizer": {"name": "Adam", "lr": 0.001},
        "loss": {"name": "DiceLoss", "include_background": True, "sigmoid": True},
        "dataset": {"name": "SegmentationDataset", "desired_shape": [desired_shape] * 3, "labels": [2, 1, 4],
                    "setup_label_hierarchy": True, "normalization": "NormalizeIntensityD",
                    "normalization_kwargs": {"channel_wise": True, "nonzero": False}, "resample": True,
                    "crop_foreground": True},
        "training": {"batch_size": 1, "n_epochs": 1, **training},
    })
