"""The BraTS training config, built from a few settings: the one builder behind the demo's ``demo_config.json``
and the Slicer module's ``bratsunet_slicer.json``; and the guided (click) model's config of ``bench_clicks.py``.

Both train the same task: the four BraTS images in, the labels 2, 1 and 4 out as the nested regions WT, TC and
ET (sigmoid outputs, Dice-based loss), each case cropped to the brain, resampled to the network's shape and
normalised per channel. What differs between the callers (the network, the learning rate, the loss's cross-entropy
term, the run's length and batch sizes, augmentation) is a parameter. The result is an ordinary config in the
original 3DUnetCNN's format, so the same run can be repeated with ``bratsunet train``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# The BraTS label values in region order: WT is every label, TC is 1 and 4, ET is 4 (setup_label_hierarchy).
BRATS_LABELS = (2, 1, 4)


def brats_training_config(model: dict[str, Any], desired_shape: Sequence[int], training: dict[str, Any],
                          training_files: Sequence[dict], validation_files: Sequence[dict] | None = None, *,
                          learning_rate: float, loss: str = "DiceLoss", scheduler_patience: int = 10,
                          min_lr: float = 1e-08, spatial_augmentations: Sequence[dict] | None = None) -> dict:
    """An original-format config that trains ``model`` (the config's ``model`` block) on BraTS cases.

    ``desired_shape`` is the network's input shape; ``training`` the config's ``training`` block (batch sizes,
    epochs, mixed precision...), written as given. ``validation_files`` is written when not None (an empty list
    too: the key is there, with no case). ``spatial_augmentations`` (MONAI dictionary transforms, e.g. RandFlipd)
    go to ``dataset.training`` when given. The optimizer is Adam at ``learning_rate``; the scheduler halves the rate
    after ``scheduler_patience`` epochs without progress, down to ``min_lr``.
    """
    dataset: dict[str, Any] = {
        "name": "SegmentationDataset", "desired_shape": list(desired_shape), "labels": list(BRATS_LABELS),
        "setup_label_hierarchy": True, "normalization": "NormalizeIntensityD",
        "normalization_kwargs": {"channel_wise": True, "nonzero": False}, "resample": True, "crop_foreground": True,
    }
    if spatial_augmentations is not None:
        dataset["training"] = {"spatial_augmentations": [dict(step) for step in spatial_augmentations]}
    config = {
        "model": model,
        "optimizer": {"name": "Adam", "lr": learning_rate},
        "loss": {"name": loss, "include_background": True, "sigmoid": True},
        "scheduler": {"name": "ReduceLROnPlateau", "patience": scheduler_patience, "factor": 0.5, "min_lr": min_lr},
        "dataset": dataset,
        "training": training,
        "training_filenames": list(training_files),
    }
    if validation_files is not None:
        config["validation_filenames"] = list(validation_files)
    return config


# The guided model of the demo and of benchmarks/bench_clicks.py: a 4-level DynUNet (filters 8-64) taking the four
# images and the 9 guidance channels, trained on native-resolution patches (refinement runs at native
# resolution) with clicks simulated on its own errors.
GUIDED_FILTERS = (8, 16, 32, 64)
# Boxes of the patch size (the rest: config.loading.GUIDANCE_DEFAULTS, filled in when the config is read).
GUIDED_OPTIONS = {"margin": 12, "max_edge": 48}


def guided_training_config(training_files: Sequence[dict], validation_files: Sequence[dict], *, patch: int = 48
                           ) -> dict:
    """An original-format config (with its ``guidance`` block) that trains the guided model on BraTS cases in
    random ``patch``³ crops of the brain at native resolution."""
    levels = len(GUIDED_FILTERS)
    # 4 images + config.validation.GUIDED_EXTRA_CHANNELS (9), not imported: the Slicer panel imports this module
    # before numpy is installed, and validation's imports would bring it.
    return {
        "model": {"name": "DynUNet", "spatial_dims": 3, "in_channels": 4 + 9, "out_channels": 3,
                  "kernel_size": [[3, 3, 3]] * levels, "strides": [[1, 1, 1]] + [[2, 2, 2]] * (levels - 1),
                  "upsample_kernel_size": [[2, 2, 2]] * (levels - 1), "filters": list(GUIDED_FILTERS)},
        "optimizer": {"name": "Adam", "lr": 0.003},
        "loss": {"name": "DiceLoss", "sigmoid": True, "smooth_nr": 1e-5, "smooth_dr": 1e-5},
        "dataset": {"name": "SegmentationDataset", "labels": list(BRATS_LABELS), "setup_label_hierarchy": True,
                    "crop_foreground": True, "normalization": "NormalizeIntensityD",
                    "normalization_kwargs": {"channel_wise": True, "nonzero": True},
                    "training": {"random_crop": True, "desired_shape": [patch] * 3,
                                 "spatial_augmentations": [{"name": "RandFlipd", "prob": 0.5, "spatial_axis": 0}]}},
        "inference": {"name": "SlidingWindowInferer", "roi_size": [patch] * 3, "sw_batch_size": 1},
        "guidance": dict(GUIDED_OPTIONS),
        "training": {"batch_size": 2, "n_epochs": 10000, "save_best": True,
                     "samples_per_epoch": 2 * len(training_files)},
        "training_filenames": list(training_files),
        "validation_filenames": list(validation_files),
    }
