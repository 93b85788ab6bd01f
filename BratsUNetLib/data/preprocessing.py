"""The deterministic preprocessing of the original 3DUnetCNN, as invertible MONAI dictionary transforms.

Training (cached once per case) and inference use this one definition, so a model always sees its inputs
the way it was trained. Order, as in the original: label hierarchy (done by the caller) -> optional
orientation -> foreground crop -> resize / centre pad-crop -> normalization. ``Invertd``/``inverse`` undo the
spatial steps, which is how predictions return to the reference grid.

Arrays are channel-first: image ``(C, X, Y, Z)`` float32, label ``(L, X, Y, Z)``.

Finite inputs can leave a step non-finite: voxels near the float32 limit (3e38) overflow the sums of a z-score
normalization (inf, then NaN) or of an interpolation, and the network then segments nothing without a word.
So every image channel is checked after each step that computes new values (the resize and the
normalization; orientation and cropping only move voxels), and the first non-finite channel stops the work with
:class:`NonFiniteValues`, an :class:`~BratsUNetLib.errors.ImageError` naming the channel and the step. The
pipeline is a :class:`Preprocessing` (a MONAI Compose) that lets that error through as it is: MONAI wraps
errors of transforms in a RuntimeError and logs several lines about the input. Callers that know the files
(:func:`BratsUNetLib.inference.pipeline.segment_case`) re-raise it naming the file with :meth:`NonFiniteValues.for_file`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai import transforms as mt

from BratsUNetLib.errors import BratsUNetError, ImageError
from BratsUNetLib.config.allowlists import resolve_name


class AbovePercentile:
    """Foreground selector: voxels above the ``percentile`` (0..1) of their own channel, in any channel.

    A class rather than a lambda so that data-loader workers can pickle it.
    """

    def __init__(self, percentile: float):
        self.percentile = float(percentile)

    def __call__(self, image: Any) -> np.ndarray:
        array = np.asarray(image)
        thresholds = np.array([channel_quantile(channel.ravel(order="K"), self.percentile) for channel in array])
        return (array > thresholds.reshape((-1,) + (1,) * (array.ndim - 1))).any(0, keepdims=True)


def channel_quantile(values: np.ndarray, q: float) -> float:
    """``np.quantile(values, q)`` (linear interpolation), computed in two passes when the minimum covers it.

    MRI volumes are mostly background at one value (86 % of a BraTS case), so a low percentile usually is the
    minimum: the two order statistics that np.quantile interpolates both lie within the run of minimal values.
    Checking that costs 15 ms per channel against 110 ms for np.quantile's selection (0.45 s per BraTS case).
    numpy rather than torch.quantile, which refuses tensors of more than 2**24 voxels.
    """
    lowest = values.min()
    upper_rank = math.ceil(q * (values.size - 1))
    if np.count_nonzero(values == lowest) > upper_rank:  # never for NaN: NaN == NaN is False
        return float(lowest)
    return float(np.quantile(values, q))


class NonFiniteValues(ImageError):
    """Channel ``channel`` (0-based) of the image holds ``count`` NaN or infinite values after ``step``."""

    def __init__(self, channel: int, step: str, count: int):
        self.channel, self.step, self.count = channel, step, count
        super().__init__(self._message(f"Channel {channel + 1} of the image"))

    def _message(self, subject: str) -> str:
        return (f"{subject} has {self.count} NaN or infinite values after {self.step}: its values are too large to "
                "compute with (sums of them pass the float32 limit, 3.4e+38); rescale the image to a usual "
                "intensity range (e.g. 0..10000) and save it again.")

    def for_file(self, path: Any) -> ImageError:
        """The same error naming the file the channel came from."""
        return ImageError(self._message(f"'{path}'"))

    def for_case(self, case_id: str, source: Any) -> ImageError:
        """The same error naming the case (its id and the file that names it in errors) and the channel."""
        return ImageError(self._message(f"Channel {self.channel + 1} of case '{case_id}' ({source})"))


def require_finite(image: Any, step: str) -> None:
    """Raise :class:`NonFiniteValues` for the first channel of ``image`` ``(C, ...)`` with a NaN or inf."""
    values = torch.as_tensor(image)
    for channel in range(values.shape[0]):
        finite = torch.isfinite(values[channel])
        if not bool(finite.all()):
            raise NonFiniteValues(channel, step, int((~finite).sum()))


class RequireFinited(mt.MapTransform):
    """Pass the data through unchanged after checking that its ``image`` is finite (:func:`require_finite`).

    ``step`` names the step before it in messages (``"the resize to 128x128x128"``). Only the image is checked:
    labels are one-hot channels that steps keep in 0..1.
    """

    def __init__(self, step: str, keys: str = "image"):
        super().__init__(keys)
        self.step = step

    def __call__(self, data: Any) -> Any:
        for key in self.key_iterator(dict(data)):
            require_finite(data[key], self.step)
        return data


class CheckedNormalization(mt.MapTransform):
    """The config's normalization transform followed by :func:`require_finite`: it moves with the normalization
    when training runs it after random steps (:func:`BratsUNetLib.training.augmentation.split_pipeline`)."""

    def __init__(self, normalization: Any, name: str):
        super().__init__("image")
        self.normalization = normalization
        self.name = name

    def __call__(self, data: Any) -> Any:
        data = self.normalization(data)
        require_finite(data["image"], f"the normalization ({self.name})")
        return data


class Preprocessing(mt.Compose):
    """A Compose whose own errors (:class:`~BratsUNetLib.errors.BratsUNetError`) come out as they were raised.

    MONAI turns every error inside a transform into ``RuntimeError("applying transform ...")`` and, with
    ``log_stats``, logs the input's statistics; a user's error must stay one line.
    """

    def __init__(self, transforms: Sequence[Any]):
        super().__init__(list(transforms), log_stats=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except RuntimeError as exc:
            error = user_error_inside(exc)
            if error is None:
                raise  # a bug: its whole chain is the report
            raise error from None


def user_error_inside(exc: BaseException) -> BratsUNetError | None:
    """The BratsUNetError that MONAI wrapped (as the cause of its RuntimeError, possibly several times), or None."""
    seen = 0
    while exc is not None and seen < 100:
        if isinstance(exc, BratsUNetError):
            return exc
        exc, seen = exc.__cause__, seen + 1
    return None


def deterministic_transforms(dataset: dict, keys: Sequence[str] = ("image", "label")) -> mt.Compose:
    """Build the deterministic part of the pipeline from a normalized ``dataset`` config block.

    ``keys`` lists the keys present: ``("image",)`` at inference, ``("image", "label")`` in training. The
    label (one-hot region channels) follows every spatial step with nearest-neighbour interpolation.
    Random cropping (``random_crop``) is not done here: the patch is drawn later, per epoch.
    """
    keys = tuple(keys)
    has_label = "label" in keys
    steps: list[Any] = []
    if dataset.get("orientation"):
        steps.append(mt.Orientationd(keys=keys, axcodes=dataset["orientation"], labels=None))
    if dataset.get("crop_foreground"):
        steps.append(mt.CropForegroundd(
            keys=keys, source_key="image", margin=1, allow_smaller=True,
            select_fn=AbovePercentile(dataset.get("foreground_percentile", 0.1))))
    desired_shape = dataset.get("desired_shape")
    if desired_shape and not dataset.get("random_crop"):
        if dataset.get("resample"):
            modes = ("trilinear", "nearest") if has_label else ("trilinear",)
            steps.append(mt.Resized(keys=keys, spatial_size=list(desired_shape), mode=modes,
                                    align_corners=(False, None) if has_label else (False,)))
            # Interpolation sums weighted voxels: near the float32 limit that can overflow.
            steps.append(RequireFinited(f"the resize to {'x'.join(str(n) for n in desired_shape)}"))
        else:
            steps.append(mt.ResizeWithPadOrCropd(keys=keys, spatial_size=list(desired_shape)))
    steps.append(normalization_transform(dataset))
    return Preprocessing(steps)


def normalization_transform(dataset: dict) -> CheckedNormalization:
    """The config's ``normalization`` transform (a MONAI dictionary transform name) applied to the image, its
    result checked for non-finite values (:class:`CheckedNormalization`)."""

    name = dataset.get("normalization") or "NormalizeIntensityD"
    cls = resolve_name("transform", name, block="dataset", key="normalization")
    return CheckedNormalization(cls(keys="image", **(dataset.get("normalization_kwargs") or {})), str(name))
