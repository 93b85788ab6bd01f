"""Trained networks ready to run: a checkpoint loaded onto a device with what it needs to segment.

:class:`LoadedModel` holds a network with its checkpoint's description (config, channel order) and prepares, once
per model, its preprocessing and its execution backend. :func:`load_models` loads an ensemble and keeps the
last few models of a long-lived process (the Slicer worker) so that repeated clicks do not reload them;
:func:`check_ensemble` says whether models can be averaged.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from monai import transforms as mt

from BratsUNetLib.config.loading import activation_of, dataset_options, guidance_options, load_config
from BratsUNetLib.config.validation import image_channel_count
from BratsUNetLib.data.preprocessing import deterministic_transforms
from BratsUNetLib.errors import BratsUNetError, CheckpointError
from BratsUNetLib.hardware.devices import resolve_device
from BratsUNetLib.inference.backends import Runner, prepare
from BratsUNetLib.inference.calibration import calibration_inputs
from BratsUNetLib.inference.options import InferenceOptions
from BratsUNetLib.modalities import canonical_channel
from BratsUNetLib.models.checkpoint import load_model

# Models kept loaded by a long-lived process (the Slicer worker) so that repeated clicks do not reload them.
_CACHE_SIZE = 4
_MODEL_CACHE: OrderedDict[tuple, LoadedModel] = OrderedDict()

ORIGINAL_AXIS_CODES = "LPS"  # the voxel order of BraTS 2020 files (affine about diag(-1, -1, 1))


class LoadedModel:
    """A network in eval mode on its device with the description from its checkpoint.

    ``config`` is the normalized original-format config the network was trained with; it decides the
    preprocessing, the activation and how outputs become labels. ``channels`` is the input order.
    """

    def __init__(self, path: Path, network: torch.nn.Module, description: dict, device: torch.device):
        self.path = path
        self.network = network
        self.description = description
        self.device = device
        self.config: dict = description["config"]
        self.dataset: dict = dataset_options(self.config, "validation")
        # BratsUNet checkpoints record the voxel order they were trained in; the original 3DUnetCNN trained on
        # BraTS files as stored, in LPS order, so inputs stored otherwise are turned to that order first.
        self.dataset["orientation"] = self.dataset.get("orientation") or ORIGINAL_AXIS_CODES
        in_channels = image_channel_count(self.config)  # a guided model also takes click channels
        self.channels: tuple[str, ...] = tuple(canonical_channel(name) for name in description["channels"])
        if in_channels is not None and int(in_channels) != len(self.channels):
            raise CheckpointError(f"Model '{path}' lists {len(self.channels)} channels ({', '.join(self.channels)}) "
                                  f"but its network takes {in_channels} images; the checkpoint is inconsistent.")
        self.guidance: dict | None = guidance_options(self.config)  # None: the model takes no clicks
        self._transforms: dict[bool, mt.Compose] = {}
        self._runners: dict[str, Runner] = {}

    def forward(self, backend: str, precision: str | None = None) -> Runner:
        """The network run by ``backend`` at ``precision`` (:func:`BratsUNetLib.inference.backends.prepare`),
        prepared once per loaded model; int8 is calibrated on phantoms (:mod:`.calibration`)."""
        key = f"{backend} {precision}"
        if key not in self._runners:
            self._runners[key] = prepare(self.network, backend=backend, device=self.device, precision=precision,
                                         calibration=lambda shape: calibration_inputs(self, shape))
        return self._runners[key]

    def transforms(self, native: bool) -> mt.Compose:
        """The deterministic preprocessing; at native resolution (no resize) when ``native``.

        The same Compose instance must preprocess and invert (MONAI checks the transform ids), hence the cache.
        """
        if native not in self._transforms:
            dataset = dict(self.dataset, desired_shape=None) if native else self.dataset
            self._transforms[native] = deterministic_transforms(dataset, keys=("image",))
        return self._transforms[native]

    def runs_native(self, options: InferenceOptions) -> bool:
        """Whether the network sees the image at native resolution: asked for, or the model resizes to nothing."""
        resized = self.dataset.get("desired_shape") and not self.dataset.get("random_crop")
        return options.native_strategy is not None or not resized

    def activation(self, options: InferenceOptions) -> str:
        """``options.activation`` if set, else what the loss says (:func:`BratsUNetLib.config.loading.activation_of`)."""
        return options.activation or activation_of(self.config)


def load_models(paths: Sequence[str | os.PathLike], config: dict | str | os.PathLike | None = None,
                device: str | torch.device = "auto") -> list[LoadedModel]:
    """Load (or take from the cache) every model of an ensemble on ``device``.

    ``config`` (a dict or a config file) is needed only for original 3DUnetCNN checkpoints, which hold bare
    weights. Models are cached by (file, modification time, device, config) so a long-lived process loads a
    model once and reloads it when the file changes.
    """
    if not paths:
        raise BratsUNetError("No model given; pass --model with a checkpoint file (.pth).")
    torch_device = resolve_device(device)
    if config is not None and not isinstance(config, Mapping):
        config = load_config(config)
    config_key = json.dumps(config, sort_keys=True, default=str) if config is not None else None
    models = []
    for path in paths:
        path = Path(path).expanduser()
        try:
            modified = path.stat().st_mtime_ns
        except OSError:
            modified = None  # load_model below explains what is wrong with the path
        key = (str(path.resolve()), modified, str(torch_device), config_key)
        model = _MODEL_CACHE.get(key)
        if model is None:
            network, description = load_model(path, config=config, device=torch_device)
            model = LoadedModel(path, network, description, torch_device)
            _MODEL_CACHE[key] = model
            while len(_MODEL_CACHE) > _CACHE_SIZE:
                _MODEL_CACHE.popitem(last=False)
        _MODEL_CACHE.move_to_end(key)
        models.append(model)
    return models


def check_ensemble(models: Sequence[LoadedModel]) -> None:
    """Models averaged together must take the same channels and predict the same outputs."""
    first = models[0]
    for model in models[1:]:
        if set(model.channels) != set(first.channels):
            raise BratsUNetError(f"Models '{first.path}' and '{model.path}' take different channels "
                                 f"({', '.join(first.channels)} vs {', '.join(model.channels)}); they cannot be "
                                 "averaged.")
        if (model.config["model"].get("out_channels") != first.config["model"].get("out_channels")
                or model.dataset.get("labels") != first.dataset.get("labels")
                or model.dataset.get("setup_label_hierarchy") != first.dataset.get("setup_label_hierarchy")):
            raise BratsUNetError(f"Models '{first.path}' and '{model.path}' predict different outputs "
                                 "(out_channels / labels); they cannot be averaged.")

