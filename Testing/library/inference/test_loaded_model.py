"""Loaded models: the cache of a long-lived process, devices, the voxel order a model was trained in
(BratsUNetLib/inference/loaded_model.py)."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
import torch
from library_support import TINY_CONFIG
from segmentation_cases import SHAPE, blob_case, saved_model, tiny_config

from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.hardware.devices import resolve_device
from BratsUNetLib.inference.loaded_model import load_models
from BratsUNetLib.inference.options import InferenceOptions
from BratsUNetLib.inference.pipeline import segment_case


def test_models_are_loaded_once_and_reloaded_when_the_file_changes(tmp_path):
    path = saved_model(tmp_path / "model.pth", tiny_config(), seed=0)
    first = load_models([path])[0]
    assert load_models([path])[0] is first
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert load_models([path])[0] is not first


def test_devices():
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(BratsUNetError, match="Unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BratsUNetError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_the_same_anatomy_stored_in_another_voxel_order_gives_the_same_segmentation(tmp_path):
    """A model sees its training voxel order whatever the file stores: BraTS LPS and a left-handed copy agree."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    paths, _ = blob_case(tmp_path / "lps", affine=lps)
    # The same voxels at the same world points, stored with the second axis reversed (a left-handed affine).
    flipped = lps @ np.array([[1.0, 0, 0, 0], [0, -1, 0, SHAPE[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]])
    flipped_paths = {}
    for name, path in paths.items():
        flipped_paths[name] = tmp_path / f"flipped_{name}.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(nib.load(path).dataobj)[:, ::-1].copy(), flipped), flipped_paths[name])
    config = tiny_config()
    assert "orientation" not in TINY_CONFIG["dataset"]  # the case this test is about: no orientation in the config
    models = load_models([saved_model(tmp_path / "model.pth", config, seed=3)], device="cpu")

    stored = segment_case(paths, models, InferenceOptions(), with_labels=False).probabilities
    other = segment_case(flipped_paths, models, InferenceOptions(), with_labels=False).probabilities
    np.testing.assert_allclose(other[:, :, ::-1], stored, atol=1e-5)
