"""Activated outputs to label maps: BraTS schemes, tiny islands, separate label channels
(BratsUNetLib/inference/postprocessing.py)."""

from __future__ import annotations

import numpy as np
import pytest
from segmentation_cases import BLOB_CENTRE, BlobDetector, blob_case, ellipsoid, model_from, tiny_config

from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.inference.options import InferenceOptions
from BratsUNetLib.inference.pipeline import segment_case
from BratsUNetLib.inference.postprocessing import probabilities_to_labels


def test_brats2021_labels_and_scheme_from_the_config(tmp_path):
    paths, _ = blob_case(tmp_path)
    options = InferenceOptions(sliding_window=True)
    assert set(np.unique(segment_case(paths, [model_from(BlobDetector(), tiny_config())],
                                      InferenceOptions(sliding_window=True, scheme="brats2021")).labels)) == {0, 3}
    trained_on_2021 = model_from(BlobDetector(), tiny_config(labels=[2, 1, 3]))
    assert set(np.unique(segment_case(paths, [trained_on_2021], options).labels)) == {0, 3}


def test_tiny_islands_are_removed_on_request(tmp_path):
    paths, _ = blob_case(tmp_path, extra_blobs=[((10, 25, 12), 1.5)])
    model = model_from(BlobDetector(), tiny_config())
    kept = segment_case(paths, [model], InferenceOptions(sliding_window=True)).labels > 0
    cleaned = segment_case(paths, [model], InferenceOptions(sliding_window=True, min_island_voxels=50)).labels > 0
    speck = ellipsoid((10, 25, 12), (1.5,) * 3)
    assert kept[speck].all() and not cleaned[speck].any()
    assert cleaned[ellipsoid(BLOB_CENTRE, (4, 4, 4))].all()


def test_separate_label_channels_take_the_most_probable_label():
    dataset = {"labels": [1, 2, 4], "setup_label_hierarchy": False}
    probabilities = np.zeros((3, 4, 1, 1), dtype=np.float32)
    probabilities[:, 0, 0, 0] = [0.6, 0.2, 0.1]  # label 1
    probabilities[:, 1, 0, 0] = [0.3, 0.2, 0.55]  # label 4
    probabilities[:, 2, 0, 0] = [0.3, 0.3, 0.1]  # nothing above 0.5, but the sum is
    labels = probabilities_to_labels(probabilities, dataset, InferenceOptions())
    assert labels[:, 0, 0].tolist() == [1, 4, 0, 0]
    summed = probabilities_to_labels(probabilities, dataset, InferenceOptions(sum_then_threshold=True))
    assert summed[:, 0, 0].tolist() == [1, 4, 1, 0]
    with pytest.raises(BratsUNetError, match="--sum"):
        probabilities_to_labels(probabilities, {"labels": [2, 1, 4], "setup_label_hierarchy": True},
                                InferenceOptions(sum_then_threshold=True))
