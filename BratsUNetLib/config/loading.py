"""The original 3DUnetCNN config format (one JSON object): read, validate, normalize, fill in defaults.

:func:`load_config` reads a config, has :func:`BratsUNetLib.config.validation.validate_config` report every
problem at once, and returns the config in the original format with two normalizations, so that old files keep
working without silent changes:

- ``cross_validation`` written in the old list form ``[{"folds": 5, "seed": 25}]`` becomes
  ``{"n_folds": 5, "random_seed": 25}`` *with the values given* (the original silently used its defaults);
- ``dataset.normalization: "zero_mean"`` (the original's alias) becomes ``"NormalizeIntensityD"``.

The readers below (:func:`dataset_options`, :func:`training_options`, ...) give a loaded config's settings
with the original's defaults filled in. Names in a config resolve through :mod:`BratsUNetLib.config.allowlists`.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from typing import Any

from BratsUNetLib.config.validation import (
    DATASET_SPLITS,
    FILENAMES_SUFFIX,
    NORMALIZATION_ALIASES,
    normalize_cross_validation,
    validate_config,
)
from BratsUNetLib.errors import ConfigError
from BratsUNetLib.inputfiles import require_regular_file

# A config with file lists of thousands of cases is well under 1 MB; anything much larger is another file
# (an image, an archive), refused before it is read into memory.
MAX_CONFIG_BYTES = 16 * 2 ** 20

# Defaults of the original (ORIGINAL.md §1). Keys accepted only for compatibility: ``inference`` ("auto":
# labels are loaded when the file list has them), ``cache_dir`` (SegmentationDatasetPersistent's cache),
# ``verbose`` (set by the original's --debug).
DATASET_DEFAULTS: dict[str, Any] = {
    "name": "SegmentationDataset",
    "labels": None,
    "setup_label_hierarchy": False,
    "desired_shape": None,
    "resample": False,
    "random_crop": False,
    "crop_foreground": False,
    "foreground_percentile": 0.1,
    "normalization": "NormalizeIntensityD",
    "normalization_kwargs": {},
    "orientation": None,
    "reader": None,
    "spatial_augmentations": [],
    "intensity_augmentations": [],
    "inference": "auto",
    "cache_dir": None,
    "verbose": False,
}

# ``prefetch_factor`` None leaves torch's DataLoader default (the original's 1 crashed without workers).
# A guided model's clicks: each a Gaussian of ``sigma`` voxels; a click recomputes a box of ``margin`` voxels
# around it (and the part of the segmentation it is on) in a box of ``max_edge`` per edge (rounded down to what
# the network's downsampling divides; 64 voxels answer a click in about 1.4 s with the BraTS 2020 DynUNet on two
# cores, benchmarks/README.md). Training (on the dataset's
# patches, e.g. ``random_crop``) gives each sample up to ``max_clicks`` simulated clicks, and none to
# ``no_click_fraction`` of them, so that the model also segments without clicks.
GUIDANCE_DEFAULTS: dict[str, Any] = {
    "sigma": 2.0, "margin": 16, "max_edge": 64, "max_clicks": 10, "no_click_fraction": 0.25,
}

TRAINING_DEFAULTS: dict[str, Any] = {
    "batch_size": 1,
    "validation_batch_size": 1,
    "n_epochs": 1000,
    "early_stopping_patience": None,
    "save_best": True,
    "save_every_n_epochs": None,
    "save_last_n_models": None,
    "amp": False,
    "samples_per_epoch": None,
    "training_iterations_per_epoch": 1,
    "prefetch_factor": None,
    "test_input": 1,
}


def read_config_file(path: str | os.PathLike) -> Any:
    """The parsed JSON of a config file; ConfigError with the path when it cannot be a config.

    Checked before reading: a regular file (a FIFO would block, a device never end) of at most
    :data:`MAX_CONFIG_BYTES`; after: UTF-8 JSON that Python can parse without exhausting its recursion limit.
    """
    path = require_regular_file(path, "Config file", "give the path of the .json config file", ConfigError)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigError(f"Cannot read the config file '{path}': {exc.strerror or exc}.") from None
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"Config file '{path}' is {size / 2 ** 20:.0f} MB; a config is a few kB (at most "
                          f"{MAX_CONFIG_BYTES // 2 ** 20} MB even with long file lists): check that this is the "
                          f"right file.")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read the config file '{path}': {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"Config file '{path}' is not a text (UTF-8 JSON) file; give the .json config.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"Config file '{path}' is not valid JSON: {exc.msg} at line {exc.lineno}, "
                          f"column {exc.colno}.") from None
    except RecursionError:
        raise ConfigError(f"Config file '{path}' nests its JSON too deeply to read (a config nests a few "
                          f"levels); check that this is the right file.") from None
    except ValueError:  # Python refuses integers of more than 4300 digits (a denial-of-service guard)
        raise ConfigError(f"Config file '{path}' holds a number of thousands of digits, too long to read; check "
                          f"that this is the right file.") from None


def load_config(path_or_dict: str | os.PathLike | Mapping) -> dict:
    """Read (if a path), validate and normalize a config; ConfigError listing every problem otherwise.

    The result is a new dict in the original format (see the module docstring for the two normalizations);
    the input is not modified.
    """
    if isinstance(path_or_dict, Mapping):
        raw, label = dict(path_or_dict), "config"
    else:
        raw, label = read_config_file(path_or_dict), str(path_or_dict)
    problems = validate_config(raw)
    if problems:
        raise ConfigError(f"{label}: " + "; ".join(problems))
    config = copy.deepcopy(raw)
    if "cross_validation" in config:
        config["cross_validation"] = normalize_cross_validation(config["cross_validation"])[0]
    for dataset in (config["dataset"], *(config["dataset"].get(s) or {} for s in DATASET_SPLITS)):
        if dataset.get("normalization") in NORMALIZATION_ALIASES:
            dataset["normalization"] = NORMALIZATION_ALIASES[dataset["normalization"]]
    return config


def dataset_options(config: Mapping, split: str | None = "training") -> dict:
    """The dataset block with defaults filled, for ``split`` "training", "validation" or None (base only).

    The ``training``/``validation`` sub-dict of the block is merged over the base for its split (the
    original used the ``validation`` options for predicted groups too). Null lists/dicts become empty.
    """
    if split is not None and split not in DATASET_SPLITS:
        raise ValueError(f"split must be one of {DATASET_SPLITS} or None, got {split!r}")
    dataset = config["dataset"]
    options = copy.deepcopy(DATASET_DEFAULTS)
    options.update(copy.deepcopy({k: v for k, v in dataset.items() if k not in DATASET_SPLITS}))
    if split is not None:
        options.update(copy.deepcopy(dataset.get(split) or {}))
    for key in ("normalization_kwargs", "spatial_augmentations", "intensity_augmentations"):
        if options[key] is None:
            options[key] = type(DATASET_DEFAULTS[key])()
    return options


def guidance_options(config: Mapping) -> dict | None:
    """The guidance block of a guided model with its defaults filled in (:data:`GUIDANCE_DEFAULTS`); None for a
    model that takes no clicks."""
    if "guidance" not in config:
        return None
    return {**GUIDANCE_DEFAULTS, **copy.deepcopy(dict(config.get("guidance") or {}))}


def training_options(config: Mapping) -> dict:
    """The training block with the original's defaults filled in."""
    return {**TRAINING_DEFAULTS, **copy.deepcopy(dict(config.get("training") or {}))}


def activation_of(config: Mapping) -> str:
    """How the network's outputs become probabilities, as the loss says: "sigmoid" (``sigmoid: true``),
    "softmax" (``softmax: true``), else "none"."""
    loss = config.get("loss") or {}
    return "sigmoid" if loss.get("sigmoid") else "softmax" if loss.get("softmax") else "none"


def filename_groups(config: Mapping) -> dict[str, list]:
    """``{group: cases}`` for every ``<group>_filenames`` list of the config, in file order."""
    return {key[: -len(FILENAMES_SUFFIX)]: value for key, value in config.items() if key.endswith(FILENAMES_SUFFIX)}


def config_for_checkpoint(config: Mapping) -> dict:
    """A copy of the config without its ``*_filenames`` lists (what a checkpoint stores)."""
    return {key: copy.deepcopy(value) for key, value in config.items() if not key.endswith(FILENAMES_SUFFIX)}
