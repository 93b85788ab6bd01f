"""One case segmented: geometry of the inverse preprocessing, resampling onto the reference, TTA, ensembles,
activations, channel names (BratsUNetLib/inference/pipeline.py)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from segmentation_cases import (BLOB_CENTRE, LEFT_HANDED, SHAPE, BlobDetector, Ramp, blob_case, dice, model_from,
                                saved_model, tiny_config)

from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.inference.loaded_model import load_models
from BratsUNetLib.inference.options import InferenceOptions
from BratsUNetLib.inference.pipeline import segment_case


@pytest.mark.parametrize("sliding_window, dataset, exact", [
    (False, {}, False),  # resize to 32³ and back
    (True, {}, True),  # native resolution
    (False, {"resample": False}, True),  # centre pad/crop to 32³
    (False, {"orientation": "RAS"}, False),  # reoriented (the first axis flipped), then resized
])
def test_tumour_probabilities_land_on_the_tumour_voxels_of_a_left_handed_image(tmp_path, sliding_window, dataset,
                                                                               exact):
    paths, blob = blob_case(tmp_path)
    model = model_from(BlobDetector(), tiny_config(**dataset))
    result = segment_case(paths, [model], InferenceOptions(sliding_window=sliding_window))

    assert result.labels.shape == SHAPE and result.labels.dtype == np.uint8
    np.testing.assert_allclose(result.affine, LEFT_HANDED)
    found = result.labels == 4  # all three regions present: enhancing tumour in BraTS 2020 labels
    assert set(np.unique(result.labels)) == {0, 4}
    # Resizing 32³ and back blurs the edge by about a voxel; at native resolution it is exact.
    assert dice(found, blob) > (0.99 if exact else 0.8)
    np.testing.assert_allclose(np.argwhere(found).mean(0), BLOB_CENTRE, atol=0.5)
    assert result.volumes_ml["WT"] == pytest.approx(found.sum() * 1.0 * 1.2 * 1.1 / 1000)
    assert result.volumes_ml["NCR"] == result.volumes_ml["ED"] == 0.0


def test_channels_on_other_grids_are_resampled_onto_the_reference(tmp_path):
    """The detector looks only at T2, stored on a coarser oblique grid: the result is still on FLAIR's voxels."""
    paths, blob = blob_case(tmp_path)
    image = nib.load(paths["t2"])
    rotation = np.array([[np.cos(0.2), -np.sin(0.2), 0], [np.sin(0.2), np.cos(0.2), 0], [0, 0, 1]])
    oblique = np.eye(4)
    oblique[:3, :3] = rotation @ np.diag([0.9, 0.9, 1.0])
    oblique[:3, 3] = LEFT_HANDED[:3, 3] + [-40, -5, -2]
    from scipy import ndimage
    to_source = np.linalg.inv(image.affine) @ oblique  # oblique voxel -> original voxel
    data = ndimage.affine_transform(image.get_fdata(), to_source[:3, :3], to_source[:3, 3], output_shape=(60, 60, 40),
                                    order=1)
    nib.save(nib.Nifti1Image(data.astype(np.float32), oblique), paths["t2"])

    result = segment_case(paths, [model_from(BlobDetector(channel=3), tiny_config())],
                          InferenceOptions(sliding_window=True))
    assert result.labels.shape == SHAPE
    assert dice(result.labels > 0, blob) > 0.85


def test_mirror_tta_averages_the_eight_flips(tmp_path):
    paths, _ = blob_case(tmp_path, affine=np.diag([1.0, 1.0, 1.0, 1.0]))
    config = tiny_config(desired_shape=None, crop_foreground=False)  # only normalization: outputs stay in place
    model = model_from(Ramp(), config)

    plain = segment_case(paths, [model], InferenceOptions()).probabilities
    tta = segment_case(paths, [model], InferenceOptions(tta=True)).probabilities
    assert plain.shape == (3, *SHAPE)
    for axis in (1, 2, 3):
        assert not np.allclose(plain, np.flip(plain, axis), atol=1e-3)
        np.testing.assert_allclose(tta, np.flip(tta, axis), atol=1e-5)


def test_ensemble_is_the_mean_of_its_models_and_native_shapes_that_do_not_divide_work(tmp_path):
    paths, _ = blob_case(tmp_path)
    config = tiny_config(desired_shape=None)  # whole volume at native size: the crop is not a multiple of 4
    models = load_models([saved_model(tmp_path / f"fold{i}.pth", config, seed=i) for i in (1, 2)])
    options = InferenceOptions()

    each = [segment_case(paths, [model], options).probabilities for model in models]
    both = segment_case(paths, models, options)
    assert both.probabilities.shape == (3, *SHAPE)
    assert not np.allclose(each[0], each[1])
    np.testing.assert_allclose(both.probabilities, (each[0] + each[1]) / 2, atol=1e-6)


def test_ensemble_members_may_order_their_channels_differently(tmp_path):
    paths, blob = blob_case(tmp_path)
    config = tiny_config()
    first = model_from(BlobDetector(channel=0), config)
    reordered = model_from(BlobDetector(channel=3), config, channels=["t2", "t1", "t1ce", "flair"])
    result = segment_case(paths, [first, reordered], InferenceOptions(sliding_window=True))
    assert dice(result.labels > 0, blob) > 0.99


def test_activation_comes_from_the_loss_and_can_be_overridden(tmp_path):
    paths, _ = blob_case(tmp_path)
    config = tiny_config()
    config["loss"] = {"name": "DiceLoss", "softmax": True}
    model = model_from(Ramp(), config)

    softmax = segment_case(paths, [model], InferenceOptions(), with_labels=False).probabilities
    inside = softmax.sum(0) > 0  # outside the foreground crop the inverse pads with zeros
    np.testing.assert_allclose(softmax.sum(0)[inside], 1.0, atol=1e-5)
    raw = segment_case(paths, [model], InferenceOptions(activation="none"), with_labels=False).probabilities
    assert raw.min() < -1 and raw.max() > 1


def test_missing_channel_and_mismatched_ensembles_are_user_errors(tmp_path):
    paths, _ = blob_case(tmp_path)
    model = model_from(BlobDetector(), tiny_config())
    with pytest.raises(BratsUNetError, match="t2"):
        segment_case({name: path for name, path in paths.items() if name != "t2"}, [model])
    three = tiny_config()
    three["model"]["in_channels"] = 3
    other = model_from(BlobDetector(), three, channels=["flair", "t1", "t1ce"])
    with pytest.raises(BratsUNetError, match="different channels"):
        segment_case(paths, [model, other])
    with pytest.raises(BratsUNetError, match="4 channels"):
        model_from(BlobDetector(), three)


def test_t2f_style_names_are_aliases(tmp_path):
    paths, blob = blob_case(tmp_path)
    aliased = {"t2f": paths["flair"], "t1n": paths["t1"], "t1c": paths["t1ce"], "t2w": paths["t2"]}
    result = segment_case(aliased, [model_from(BlobDetector(), tiny_config())], InferenceOptions(sliding_window=True))
    assert dice(result.labels > 0, blob) > 0.99
