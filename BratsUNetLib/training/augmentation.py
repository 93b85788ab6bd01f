"""The random part of the training pipeline, built from the config's ``dataset`` options.

The original's order is: deterministic steps (orientation, foreground crop, resize or pad-crop) -> random crop ->
spatial augmentations (image + label) -> normalization (image) -> intensity augmentations (image).
:func:`split_pipeline` cuts that order in two: the part computed once per case and cached, and the part run
for every sample. Normalization moves to the per-sample part whenever a random crop or a spatial augmentation
comes before it, as in the original (a patch is normalized with its own statistics).

Randomness is controlled per sample: :func:`seed_pipeline` seeds the per-sample transforms from one integer
that the sampler draws, so results depend neither on data-loader workers nor on where a run was resumed.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from monai import transforms as mt

from BratsUNetLib.errors import ConfigError
from BratsUNetLib.data.preprocessing import Preprocessing, deterministic_transforms, normalization_transform
from BratsUNetLib.config.allowlists import resolve_name


def has_random_crop(options: dict) -> bool:
    """True when samples are random patches of ``desired_shape`` rather than whole (resized) volumes."""
    return bool(options.get("random_crop") and options.get("desired_shape"))


def split_pipeline(options: dict, keys: Sequence[str] = ("image", "label")) -> tuple[mt.Compose, mt.Compose | None]:
    """``(cached, per_sample)`` transforms for dataset ``options`` (a normalized ``dataset`` block).

    ``cached`` is deterministic (from :func:`preprocessing.deterministic_transforms`, shared with inference);
    ``per_sample`` is ``None`` when nothing random is configured.
    """
    keys = tuple(keys)
    cached = deterministic_transforms(options, keys)
    spatial = _augmentations(options, "spatial_augmentations", keys)
    intensity = _augmentations(options, "intensity_augmentations", ("image",))
    steps: list[Any] = []
    if has_random_crop(options):
        shape = list(options["desired_shape"])
        # Pad first so every patch has the full shape even when the cropped brain is smaller (batches stack).
        steps += [mt.SpatialPadd(keys=keys, spatial_size=shape),
                  mt.RandSpatialCropd(keys=keys, roi_size=shape, random_size=False)]
    steps += spatial
    if steps:
        # The deterministic pipeline ends with the normalization (see preprocessing.py); run it after the
        # random spatial steps instead.
        *deterministic, normalization = cached.transforms
        if type(normalization) is not type(normalization_transform(options)):
            raise AssertionError("deterministic_transforms() must end with the normalization step")
        cached = Preprocessing(deterministic)
        steps.append(normalization)
    steps += intensity
    # Preprocessing, not mt.Compose: a user's error inside (values that overflow) stays one line.
    return cached, (Preprocessing(steps) if steps else None)


def seed_pipeline(per_sample: mt.Compose | None, seed: int) -> None:
    """Make the next call of ``per_sample`` draw its random parameters from ``seed`` (0 <= seed < 2**32)."""
    if per_sample is not None:
        per_sample.set_random_state(seed=int(seed))


def _augmentations(options: dict, key: str, default_keys: tuple[str, ...]) -> list[Any]:
    """Instantiate the ``{"name": <MONAI dictionary transform>, ...kwargs}`` entries of ``options[key]``.

    Spatial transforms move the label with the image; when the transform takes a ``mode`` and the config gives
    none, the label gets ``nearest`` so its one-hot channels stay binary (the original left the image's mode).
    """

    transforms = []
    for position, entry in enumerate(options.get(key) or []):
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(f"dataset: '{key}' item {position + 1} must be an object with a \"name\", got {entry!r}.")
        cls = resolve_name("transform", entry["name"], block="dataset", key=key)
        kwargs = {k: v for k, v in entry.items() if k != "name"}
        kwargs.setdefault("keys", list(default_keys))
        parameters = inspect.signature(cls).parameters
        keys = [kwargs["keys"]] if isinstance(kwargs["keys"], str) else list(kwargs["keys"])
        if "mode" in parameters and "mode" not in kwargs and "label" in keys:
            image_mode = parameters["mode"].default
            kwargs["mode"] = [image_mode if k != "label" else "nearest" for k in keys]
        try:
            transforms.append(cls(**kwargs))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"dataset: '{key}' item {position + 1} ({entry['name']}): {exc}. "
                              f"Check its keyword arguments against the MONAI documentation.") from None
    return transforms
