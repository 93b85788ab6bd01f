"""The config that fine-tunes a model: the model's own network, preprocessing, labels and loss, new cases.

A model is fine-tuned as it was trained: its config (a BratsUNet checkpoint's stored config, or the config an
original 3DUnetCNN checkpoint was trained with) keeps its ``model``, ``dataset``, ``loss``, ``scheduler`` and
``inference`` blocks, so the weights fit the network and the new cases are prepared as the old ones were. Only
what a fine-tuning run chooses changes: the cases, the epochs, the learning rate and the batch size. A model that
sees whole volumes at their own resolution (no ``dataset.desired_shape``, e.g. a MONAI bundle) is fine-tuned on
random patches of ``patch_size`` (``dataset.training``, so its inference stays as it was).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from BratsUNetLib.config.validation import FILENAMES_SUFFIX


def fine_tuning_config(model_config: Mapping[str, Any], training_files: Sequence[Mapping],
                       validation_files: Sequence[Mapping] | None, *, epochs: int, learning_rate: float,
                       batch_size: int, patch_size: int) -> dict[str, Any]:
    """A training config for the model of ``model_config`` on new cases.

    ``training_files`` / ``validation_files`` are ``{"image": [paths in the model's channel order], "label":
    path}`` entries (``validation_files`` None or empty: no validation). ``patch_size`` (voxels per edge) is used
    only for models without a ``dataset.desired_shape``. Returns a new dict; ``model_config`` is not changed.
    """
    config = {key: copy.deepcopy(value) for key, value in model_config.items()
              if not key.endswith(FILENAMES_SUFFIX) and key != "cross_validation"}  # new cases replace the old
    config["optimizer"] = {**dict(config.get("optimizer") or {"name": "Adam"}), "lr": learning_rate}
    config["training"] = {**dict(config.get("training") or {}), "n_epochs": epochs, "batch_size": batch_size,
                          "validation_batch_size": 1, "save_best": True, "early_stopping_patience": None}
    dataset = config["dataset"] = dict(config.get("dataset") or {})
    if not dataset.get("desired_shape"):
        dataset["training"] = {**dict(dataset.get("training") or {}), "random_crop": True,
                               "desired_shape": [patch_size] * 3}
    config["training_filenames"] = [dict(entry) for entry in training_files]
    if validation_files:
        config["validation_filenames"] = [dict(entry) for entry in validation_files]
    return config
