"""Clicks for guided refinement: parsing and placing them, the click maps a guided network sees, the click
simulator and the box a click recomputes. Small generated grids; every expectation is computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from BratsUNetLib.data.labels import labels_to_regions
from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.guidance import (
    GUIDANCE_CHANNELS,
    Click,
    VoxelClick,
    guided_input,
    keep_unclicked_regions,
    next_click,
    parse_click,
    refinement_box,
    to_voxel_clicks,
)

# BraTS 2020 files: LPS voxel axes, 1 mm.
LPS = np.array([[-1.0, 0, 0, 120], [0, -1.0, 0, 120], [0, 0, 1.0, -60], [0, 0, 0, 1]])


@pytest.mark.parametrize("text, positive, expected", [
    ("12.5,-30,8", True, Click((12.5, -30.0, 8.0), "WT", True)),
    ("1,2,3:tc", False, Click((1.0, 2.0, 3.0), "TC", False)),
    ("1,2,3:4", True, Click((1.0, 2.0, 3.0), "ET", True)),  # a label value: the region it is innermost in
    ("1,2,3:2", True, Click((1.0, 2.0, 3.0), "WT", True)),
])
def test_clicks_are_read_as_points_in_mm_with_their_region(text, positive, expected):
    assert parse_click(text, positive) == expected


@pytest.mark.parametrize("text, positive, message", [
    ("1,2", True, "is not a point"), ("1,2,nan", True, "is not a point"), ("a,b,c", True, "is not a point"),
    ("1,2,3:XX", True, "unknown region 'XX'"), ("1,2,3:2", False, "only for --add"),
])
def test_a_bad_click_is_one_line_naming_it(text, positive, message):
    with pytest.raises(BratsUNetError, match=message) as raised:
        parse_click(text, positive)
    assert text in str(raised.value) and "\n" not in str(raised.value)


def test_a_click_goes_to_its_nearest_voxel_and_one_outside_the_image_is_refused():
    # R, A, S = 120 - i, 120 - j, k - 60 on this grid.
    [click] = to_voxel_clicks([Click((110.2, 100.0, -50.4), "TC", True)], LPS, (32, 32, 32))
    assert click == VoxelClick((10, 20, 10), "TC", True)
    with pytest.raises(BratsUNetError, match=r"R,A,S 200,100,-50 mm lies outside the image"):
        to_voxel_clicks([Click((200.0, 100.0, -50.0), "WT", True)], LPS, (32, 32, 32))


def test_the_guided_input_holds_the_images_a_map_per_region_and_sign_and_the_prior():
    image = np.random.default_rng(0).normal(size=(4, 24, 24, 24)).astype(np.float32)
    labels = np.zeros((24, 24, 24), np.uint8)
    labels[4:10, 4:10, 4:10] = 2
    labels[6:8, 6:8, 6:8] = 4
    clicks = [VoxelClick((12, 12, 12), "TC", True), VoxelClick((5, 5, 5), "WT", False)]
    guided = guided_input(image, labels_to_regions(labels), clicks, sigma=2)
    assert guided.shape == (4 + 6 + 3, 24, 24, 24) and guided.dtype == np.float32
    np.testing.assert_array_equal(guided[:4], image)
    maps = dict(zip(GUIDANCE_CHANNELS, guided[4:10]))
    # Each click is the peak (1.0) of its own channel's map, which falls off around it; the others are empty.
    assert maps["TC+"][12, 12, 12] == pytest.approx(1.0) and maps["TC+"][12, 12, 16] < 0.5
    assert maps["WT-"][5, 5, 5] == pytest.approx(1.0)
    assert not any(maps[name].any() for name in ("WT+", "TC-", "ET+", "ET-"))
    np.testing.assert_array_equal(guided[10:].astype(bool), labels_to_regions(labels))


def test_in_a_crop_the_clicks_move_with_it_and_one_outside_is_left_out():
    image = np.zeros((4, 8, 8, 8), np.float32)
    labels = np.zeros((8, 8, 8), np.uint8)
    clicks = [VoxelClick((12, 13, 14), "ET", True), VoxelClick((30, 2, 2), "ET", True)]
    guided = guided_input(image, labels_to_regions(labels), clicks, sigma=1, offset=(10, 10, 10))
    et = guided[4 + GUIDANCE_CHANNELS.index("ET+")]
    assert np.unravel_index(int(np.argmax(et)), et.shape) == (2, 3, 4)
    assert et[7].max() < 0.01  # DeepEdit alone would have put the second click on this border


def _regions(shape, boxes):
    """Region masks (3, X, Y, Z): ``boxes`` maps a region index to a list of (slice, slice, slice)."""
    masks = np.zeros((3, *shape), bool)
    for channel, found in boxes.items():
        for box in found:
            masks[(channel, *box)] = True
    return masks


def test_the_simulated_click_goes_to_the_middle_of_the_largest_error():
    reference = _regions((32, 32, 32), {0: [np.s_[4:20, 4:20, 4:20]], 1: [np.s_[8:12, 8:12, 8:12]]})
    segmentation = reference.copy()
    segmentation[1] = False  # the tumour core missed (64 voxels)...
    segmentation[0][24:27, 24:27, 24:27] = True  # ...and a small false whole-tumour blob (27 voxels)
    click = next_click(segmentation, reference)
    assert click.region == "TC" and click.positive and all(8 <= v < 12 for v in click.index)
    segmentation[1] = reference[1]
    assert next_click(segmentation, reference) == VoxelClick((25, 25, 25), "WT", False)
    assert next_click(reference, reference) is None
    # Drawn at random (training), the click stays inside the error.
    rng = np.random.default_rng(3)
    for _ in range(5):
        click = next_click(segmentation, reference, rng=rng)
        assert click.region == "WT" and not click.positive and all(24 <= v < 27 for v in click.index)


def test_the_box_holds_the_clicks_with_a_margin_and_the_part_of_the_region_a_click_is_on():
    prior = _regions((64, 64, 64), {0: [np.s_[10:40, 10:20, 10:20]]})
    # A click on the false region: the box reaches the region's whole extent (and a little beyond).
    box = refinement_box([VoxelClick((12, 15, 15), "WT", False)], prior, margin=4, max_edge=64)
    assert box == (slice(8, 42), slice(8, 22), slice(8, 22))
    # A click away from any region: the margin only, clipped to the volume.
    box = refinement_box([VoxelClick((60, 2, 50), "WT", True)], prior, margin=4, max_edge=64)
    assert box == (slice(56, 64), slice(0, 7), slice(46, 55))
    # Never more than max_edge per edge.
    box = refinement_box([VoxelClick((12, 15, 15), "WT", False)], prior, margin=4, max_edge=16)
    assert all(s.stop - s.start <= 16 for s in box) and box[0].start <= 12 < box[0].stop


def test_a_fixed_size_box_keeps_its_centre_and_stays_in_the_volume():
    from BratsUNetLib.guidance import fixed_size_box

    assert fixed_size_box((slice(10, 20), slice(0, 4), slice(50, 60)), 16, (64, 64, 60)) == (
        slice(7, 23), slice(0, 16), slice(44, 60))
    assert fixed_size_box((slice(2, 5),) * 3, 16, (8, 40, 40))[0] == slice(0, 8)  # a short axis: all of it


def _x_ranges(whole, core, enhancing, shape=(8, 1, 1)):
    """Region masks ``(3, 8, 1, 1)`` from the x ranges of WT, TC and ET."""
    masks = np.zeros((3, *shape), bool)
    for channel, (start, stop) in enumerate((whole, core, enhancing)):
        masks[channel, start:stop] = True
    return masks


def test_a_click_changes_its_region_and_the_inner_ones_and_the_outer_ones_only_by_nesting():
    prior = _x_ranges((1, 7), (2, 6), (3, 5))
    # What the network says: WT shrunk to 2..6, TC grown to 0..8 (beyond the prior's WT), ET moved to 5..7.
    network = _x_ranges((2, 6), (0, 8), (5, 7)).astype(np.float32)

    core_click = keep_unclicked_regions(network, prior, {"TC"}) > 0.5
    assert core_click[1:].tolist() == network[1:].astype(bool).tolist()  # TC and ET: the network's
    assert core_click[0, :, 0, 0].tolist() == [True] * 8                  # WT grows with TC, never shrinks

    et_only = _x_ranges((0, 8), (2, 4), (3, 4)).astype(np.float32)
    after = keep_unclicked_regions(et_only, prior, {"ET"}) > 0.5
    assert after[2].tolist() == et_only[2].astype(bool).tolist()
    assert after[:2].tolist() == prior[:2].tolist()                      # an ET click: WT and TC as they were

    np.testing.assert_array_equal(keep_unclicked_regions(network, prior, {"WT"}), network)
