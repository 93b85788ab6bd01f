"""Preprocessing never hands the network NaN or inf: overflowing channels are named in one line."""

import logging

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from tiny_config import tiny_config

from BratsUNetLib.config.loading import dataset_options, load_config
from BratsUNetLib.errors import ImageError
from BratsUNetLib.data.preprocessing import (NonFiniteValues, RequireFinited, deterministic_transforms, require_finite,
                                        user_error_inside)


def _dataset() -> dict:
    return dataset_options(load_config(tiny_config(16)), "validation")


def _image(seed: int = 0) -> MetaTensor:
    values = np.random.default_rng(seed).random((4, 32, 32, 32), dtype=np.float32) * 1000
    return MetaTensor(torch.from_numpy(values), affine=torch.eye(4, dtype=torch.float64))


def test_finite_images_pass_unchanged_in_shape():
    out = deterministic_transforms(_dataset(), keys=("image",))({"image": _image()})["image"]
    assert out.shape == (4, 16, 16, 16) and bool(torch.isfinite(out).all())


def test_values_near_the_float32_limit_are_named_after_the_normalization(caplog):
    """Finite voxels near 3e38 overflow the z-score's sums: the second channel is named, in one line, with no
    MONAI wrapping (RuntimeError) and none of MONAI's logged input statistics."""
    image = _image()
    image[1] = torch.rand(32, 32, 32) * 3e38
    assert bool(torch.isfinite(image).all())
    with caplog.at_level(logging.DEBUG), pytest.raises(NonFiniteValues) as info:
        deterministic_transforms(_dataset(), keys=("image",))({"image": image})
    error = info.value
    assert isinstance(error, ImageError) and error.channel == 1
    message = str(error)
    assert message.startswith("Channel 2 of the image has ") and "\n" not in message
    assert "after the normalization (NormalizeIntensityD)" in message
    assert "rescale the image to a usual intensity range" in message
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert str(error.for_file("/data/t1.nii.gz")).startswith("'/data/t1.nii.gz' has ")


def test_the_check_after_the_resize_names_the_resize():
    image = _image()
    image[3, 0, 0, 0] = float("inf")
    with pytest.raises(NonFiniteValues, match=r"^Channel 4 of the image has 1 NaN or infinite values after the resize"):
        RequireFinited("the resize to 16x16x16")({"image": image})
    require_finite(_image(), "nothing")  # finite: no error


def test_the_pipeline_checks_after_the_resize_and_with_the_normalization():
    steps = deterministic_transforms(_dataset(), keys=("image",)).transforms
    names = [type(step).__name__ for step in steps]
    assert names.index("RequireFinited") == names.index("Resized") + 1
    assert names[-1] == "CheckedNormalization"


def test_errors_wrapped_by_a_plain_monai_compose_can_be_unwrapped():
    """Training runs the normalization inside its own Compose (augmentation.split_pipeline)."""
    from monai import transforms as mt

    image = _image()
    image[0] = 3e38
    pipeline = mt.Compose(list(deterministic_transforms(_dataset(), keys=("image",)).transforms), log_stats=False)
    with pytest.raises(RuntimeError) as info:
        pipeline({"image": image})
    assert isinstance(user_error_inside(info.value), NonFiniteValues)
    assert user_error_inside(RuntimeError("a bug")) is None
