"""BraTS labels ⇄ regions (ORIGINAL.md §3), training target channels, label checks, island removal."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from BratsUNetLib.errors import BratsUNetError, ImageError
from BratsUNetLib.data.labels import (SCHEMES, check_label_values, label_channels, labels_to_regions, region_names,
                                 regions_to_labels, remove_small_islands)

# One voxel per column: probabilities of WT, TC, ET.
PROBABILITIES = np.array([
    [0.5, 0.6, 0.4, 0.9, 0.9, 0.500001, 0.0],   # WT
    [0.9, 0.4, 0.9, 0.51, 0.9, 0.500001, 0.9],  # TC
    [0.9, 0.9, 0.9, 0.5, 0.9, 0.500001, 0.9],   # ET
], dtype=np.float32)


@pytest.mark.parametrize("scheme, enhancing", [("brats2020", 4), ("brats2021", 3)])
def test_regions_become_labels_with_strict_thresholds_and_nesting(scheme, enhancing):
    labels = regions_to_labels(PROBABILITIES, scheme=scheme)
    assert labels.dtype == np.uint8
    # exactly 0.5 is not tumour; ET without TC stays edema; TC outside WT is nothing; ET at 0.5 is not ET.
    assert labels.tolist() == [0, 2, 0, 1, enhancing, enhancing, 0]


@pytest.mark.parametrize("scheme, enhancing", [("brats2020", 4), ("brats2021", 3)])
def test_the_priority_rule_labels_as_monai_bundles_do(scheme, enhancing):
    """Each region at or above the threshold, wherever it is: ET first, then TC, then WT (no nesting)."""
    probabilities = np.array([
        [0.5, 0.2, 0.2, 0.9, 0.49, 0.0],  # WT
        [0.1, 0.5, 0.2, 0.9, 0.49, 0.0],  # TC
        [0.1, 0.1, 0.5, 0.1, 0.49, 0.0],  # ET
    ], dtype=np.float32)
    labels = regions_to_labels(probabilities, scheme=scheme, rule="priority")
    assert labels.tolist() == [2, 1, enhancing, 1, 0, 0]
    # The nested rule on the same outputs: strictly above, and ET or TC alone are nothing.
    assert regions_to_labels(probabilities, scheme=scheme).tolist() == [0, 0, 0, 1, 0, 0]
    with pytest.raises(ValueError, match="unknown label rule"):
        regions_to_labels(probabilities, rule="majority")


def test_threshold_is_configurable():
    assert regions_to_labels(PROBABILITIES, threshold=0.55).tolist() == [0, 2, 0, 2, 4, 0, 0]


def test_regions_to_labels_rejects_other_channel_counts():
    with pytest.raises(ValueError, match=r"\(3, \.\.\.\)"):
        regions_to_labels(np.zeros((2, 4, 4, 4)))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_labels_to_regions_follows_the_brats_definitions(scheme):
    s = SCHEMES[scheme]
    label_map = np.array([0, s.necrotic, s.edema, s.enhancing])
    regions = labels_to_regions(label_map, scheme)
    assert regions.dtype == bool
    assert regions.tolist() == [[False, True, True, True],    # WT
                                [False, True, False, True],   # TC
                                [False, False, False, True]]  # ET


@settings(max_examples=40, deadline=None)
@given(label_map=arrays(np.uint8, (4, 5, 3), elements=st.sampled_from([0, 1, 2, 4])),
       scheme=st.sampled_from(["brats2020", "brats2021"]))
def test_labels_survive_a_round_trip_through_regions(label_map, scheme):
    if scheme == "brats2021":
        label_map = np.where(label_map == 4, 3, label_map).astype(np.uint8)
    regions = labels_to_regions(label_map, scheme).astype(np.float32)
    np.testing.assert_array_equal(regions_to_labels(regions, scheme=scheme), label_map)


def test_hierarchy_channels_are_the_brats_regions():
    label_map = np.array([[0, 1], [2, 4]], dtype=np.uint8)
    channels = label_channels(label_map, [2, 1, 4], hierarchy=True)
    assert channels.dtype == np.uint8 and channels.shape == (3, 2, 2)
    np.testing.assert_array_equal(channels, labels_to_regions(label_map))


def test_channels_without_hierarchy_one_per_entry_and_lists_merge():
    label_map = np.array([0, 1, 2, 3, 4])
    assert label_channels(label_map, [1, 2, 4]).tolist() == [[0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1]]
    assert label_channels(label_map, [[1, 4], 2]).tolist() == [[0, 1, 0, 0, 1], [0, 0, 1, 0, 0]]
    assert label_channels(label_map, [[1, 2], 4], hierarchy=True).tolist() == [[0, 1, 1, 0, 1], [0, 0, 0, 0, 1]]


def test_unexpected_label_values_name_the_file_and_the_allowed_values():
    label_map = np.array([0, 1, 2, 3, 3], dtype=np.uint8)
    check_label_values(label_map, (0, 1, 2, 3), "case_seg.nii.gz")  # fine for BraTS 2021
    with pytest.raises(ImageError, match=r"case_seg\.nii\.gz.*\[3\].*\[0, 1, 2, 4\]"):
        check_label_values(label_map, (0, 1, 2, 4), "case_seg.nii.gz")
    with pytest.raises(ImageError, match=r"\[7\]"):
        check_label_values(np.array([0, 7], dtype=np.int16), (0, 1, 2, 4), "other.nii.gz")


def test_small_islands_are_removed_and_touching_parts_kept():
    label_map = np.zeros((20, 20, 20), dtype=np.uint8)
    label_map[4:10, 4:10, 4:10] = 2
    label_map[5:8, 5:8, 5:8] = 4
    label_map[10, 10, 10] = 1                         # touches the tumour only by a corner: same component
    label_map[15:17, 15, 15] = 4                      # a 2-voxel island
    label_map[0, 19, 0] = 2                           # a 1-voxel island
    cleaned = remove_small_islands(label_map, min_voxels=3)
    expected = label_map.copy()
    expected[15:17, 15, 15] = 0
    expected[0, 19, 0] = 0
    np.testing.assert_array_equal(cleaned, expected)
    assert label_map[0, 19, 0] == 2  # the input is left alone
    np.testing.assert_array_equal(remove_small_islands(label_map, min_voxels=1), label_map)
    assert not remove_small_islands(np.zeros((3, 3, 3), np.uint8), 5).any()


@pytest.mark.parametrize("scheme, values", [("brats2020", [1, 2, 4]), ("brats2021", [1, 2, 3])])
def test_region_names_give_values_names_and_distinct_colours(scheme, values):
    infos = region_names(scheme)
    assert [info.value for info in infos] == values
    assert [info.name for info in infos] == ["Necrotic tumor core", "Peritumoral edema", "Enhancing tumor"]
    assert len({info.rgb for info in infos}) == 3
    assert all(0.0 <= c <= 1.0 for info in infos for c in info.rgb_float)


def test_unknown_scheme_is_a_user_error():
    with pytest.raises(BratsUNetError, match="brats2020, brats2021"):
        labels_to_regions(np.zeros(3), "brats2019")
