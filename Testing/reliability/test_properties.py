"""Property-based tests (hypothesis): label conversions, metrics and geometry round trips on generated inputs.

Each property holds for every input hypothesis draws (a bounded number per test, so the run time is
predictable): label maps of any shape and content, masks of any shape, and voxel grids with random rotations,
axis orders, flips (left- and right-handed), spacings and origins, through NIfTI files and a Slicer scene.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from BratsUNetLib.data.images import read_image, resample_to_reference, write_image
from BratsUNetLib.data.labels import SCHEMES, label_channels, labels_to_regions, regions_to_labels
from BratsUNetLib.evaluation.metrics import MISSING_HD95_MM, dice, hd95, region_metrics, volume_ml
from BratsUNetLib.data.preprocessing import AbovePercentile, channel_quantile

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

shapes = hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=7)
small_shapes = hnp.array_shapes(min_dims=3, max_dims=3, min_side=2, max_side=9)


@st.composite
def label_maps(draw, scheme: str = "brats2020") -> np.ndarray:
    values = [0, *SCHEMES[scheme].labels]
    return draw(hnp.arrays(np.uint8, shapes, elements=st.sampled_from(values)))


@st.composite
def mask_pairs(draw) -> tuple[np.ndarray, np.ndarray]:
    shape = draw(small_shapes)
    return (draw(hnp.arrays(np.bool_, shape)), draw(hnp.arrays(np.bool_, shape)))


spacings = st.tuples(*[st.floats(0.5, 3.0, allow_nan=False)] * 3)


@st.composite
def grids(draw, max_side: int = 9) -> tuple[tuple[int, int, int], np.ndarray]:
    """``(shape, affine)``: a random rotation (unit quaternion) times an axis permutation with flips (either
    handedness), positive spacings and an origin anywhere within 200 mm."""
    q = np.array(draw(st.tuples(*[st.floats(-1, 1, allow_nan=False)] * 4)))
    if np.linalg.norm(q) < 0.1:
        q = np.array([1.0, 0, 0, 0])
    w, x, y, z = q / np.linalg.norm(q)
    rotation = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                         [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                         [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    permutation = np.eye(3)[list(draw(st.permutations([0, 1, 2])))]
    signs = np.diag(draw(st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3)))
    affine = np.eye(4)
    affine[:3, :3] = rotation @ permutation @ signs @ np.diag(draw(spacings))
    affine[:3, 3] = draw(st.tuples(*[st.floats(-200, 200, allow_nan=False)] * 3))
    shape = draw(st.tuples(*[st.integers(2, max_side)] * 3))
    return shape, affine


def _volume(shape, seed: int) -> np.ndarray:
    """Distinct whole-number intensities (exact in float32 and int16 files)."""
    return np.random.default_rng(seed).permutation(int(np.prod(shape))).reshape(shape).astype(np.float32)


# ---------------------------------------------------------------------------------------- label conversions

@PROPERTY_SETTINGS
@given(labels=label_maps(), scheme=st.sampled_from(sorted(SCHEMES)))
def test_regions_of_a_label_map_convert_back_to_the_same_map(labels, scheme):
    labels = np.where(labels == 4, SCHEMES[scheme].enhancing, labels).astype(np.uint8)
    regions = labels_to_regions(labels, scheme)
    assert regions.shape == (3, *labels.shape)
    np.testing.assert_array_equal(regions_to_labels(regions.astype(np.float32), scheme=scheme), labels)


@PROPERTY_SETTINGS
@given(labels=label_maps())
def test_regions_are_nested_and_match_the_hierarchical_training_channels(labels):
    whole, core, enhancing = labels_to_regions(labels)
    assert not (core & ~whole).any() and not (enhancing & ~core).any()
    np.testing.assert_array_equal(label_channels(labels, [2, 1, 4], hierarchy=True),
                                  np.stack([whole, core, enhancing]).astype(np.uint8))


@PROPERTY_SETTINGS
@given(probabilities=hnp.arrays(np.float32, st.tuples(st.just(3), st.integers(1, 6), st.integers(1, 6),
                                                      st.integers(1, 6)), elements=st.floats(0, 1, width=32)),
       threshold=st.floats(0.05, 0.95))
def test_probabilities_become_labels_by_the_strict_nested_thresholds(probabilities, threshold):
    labels = regions_to_labels(probabilities, threshold=threshold)
    assert set(np.unique(labels).tolist()) <= {0, 1, 2, 4}
    whole = probabilities[0] > threshold
    core = whole & (probabilities[1] > threshold)
    enhancing = core & (probabilities[2] > threshold)
    regions = labels_to_regions(labels)
    np.testing.assert_array_equal(regions, np.stack([whole, core, enhancing]))


# ------------------------------------------------------------------------------------------------ metrics

@PROPERTY_SETTINGS
@given(values=hnp.arrays(np.float32, st.integers(1, 300), elements=st.sampled_from([0.0, 0.0, 0.0, 0.5, 1.0, 7.0,
                                                                                   float("nan")])),
       q=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]))
def test_foreground_threshold_is_numpys_quantile_whatever_the_share_of_background(values, q):
    """The two-pass shortcut for mostly-background channels gives exactly np.quantile, NaN included."""
    np.testing.assert_array_equal(channel_quantile(values, q), np.quantile(values, q))


def test_foreground_is_what_is_above_the_percentile_of_any_channel():
    image = np.zeros((2, 10, 1, 1), np.float32)
    image[0, 8:] = 5.0  # channel 0: 80 % background, so its 10th percentile is the background
    image[1] = np.arange(10).reshape(10, 1, 1)  # channel 1: 10th percentile 0.9
    assert AbovePercentile(0.1)(image)[0, :, 0, 0].tolist() == [False] + [True] * 9


@PROPERTY_SETTINGS
@given(masks=mask_pairs(), spacing=spacings)
def test_dice_and_hd95_are_symmetric_bounded_and_never_nan(masks, spacing):
    a, b = masks
    assert dice(a, b) == dice(b, a)
    assert 0.0 <= dice(a, b) <= 1.0
    assert dice(a, a) == 1.0
    distance = hd95(a, b, spacing)
    assert distance == pytest.approx(hd95(b, a, spacing))
    assert not math.isnan(distance) and distance >= 0
    assert hd95(a, a, spacing) == 0.0
    if a.any() != b.any():
        assert (dice(a, b), distance) == (0.0, MISSING_HD95_MM)
    elif a.any():
        # Surfaces lie inside the array, so no distance can exceed its diagonal.
        assert distance <= np.linalg.norm(np.array(a.shape) * np.array(spacing)) + 1e-9


@PROPERTY_SETTINGS
@given(masks=mask_pairs(), spacing=spacings, scale=st.floats(0.25, 4.0), pad=st.integers(0, 3))
def test_hd95_scales_with_the_voxel_size_and_ignores_empty_margins(masks, spacing, scale, pad):
    a, b = masks
    distance = hd95(a, b, spacing)
    if a.any() and b.any():
        assert hd95(a, b, [s * scale for s in spacing]) == pytest.approx(distance * scale, rel=1e-6)
    padded = [np.pad(m, pad) for m in (a, b)]
    assert hd95(*padded, spacing) == pytest.approx(distance)
    assert dice(*padded) == dice(a, b)


@PROPERTY_SETTINGS
@given(prediction=label_maps(), reference=label_maps(), spacing=spacings)
def test_region_metrics_of_label_maps_are_complete_and_volumes_add_up(prediction, reference, spacing):
    shape = tuple(min(p, r) for p, r in zip(prediction.shape, reference.shape))
    prediction, reference = prediction[tuple(slice(n) for n in shape)], reference[tuple(slice(n) for n in shape)]
    metrics = region_metrics(prediction, reference, spacing)
    assert list(metrics) == ["WT", "TC", "ET"]
    for values in metrics.values():
        assert all(not math.isnan(v) for v in values.values())
    voxel_ml = float(np.prod(spacing)) / 1000
    assert metrics["WT"]["volume_reference_ml"] == pytest.approx(np.count_nonzero(reference) * voxel_ml)
    assert metrics["TC"]["volume_prediction_ml"] == pytest.approx(
        volume_ml(prediction == 1, spacing) + volume_ml(prediction == 4, spacing))
    if (prediction == reference).all():
        assert all(v["dice"] == 1.0 and v["hd95"] == 0.0 for v in metrics.values())


# ----------------------------------------------------------------------------------------------- geometry

@PROPERTY_SETTINGS
@given(grid=grids(), seed=st.integers(0, 2**16))
def test_nifti_round_trip_keeps_voxels_and_affine(tmp_path_factory, grid, seed):
    shape, affine = grid
    array = _volume(shape, seed)
    path = write_image(tmp_path_factory.mktemp("nifti") / "image.nii.gz", array, affine, np.float32)
    image = read_image(path)
    np.testing.assert_array_equal(image.array, array)
    np.testing.assert_allclose(image.affine, affine, atol=1e-4)


@PROPERTY_SETTINGS
@given(grid=grids(), seed=st.integers(0, 2**16), permutation=st.permutations([0, 1, 2]),
       flips=st.tuples(*[st.booleans()] * 3))
def test_the_same_grid_stored_in_another_axis_order_is_resampled_exactly(grid, seed, permutation, flips):
    """A volume stored transposed and flipped (with the affine that keeps each voxel's world position) comes back
    onto the original grid voxel for voxel, whichever handedness either storage has."""
    shape, affine = grid
    array = _volume(shape, seed)
    stored, stored_affine = array, affine.copy()
    for axis, flip in enumerate(flips):
        if flip:  # index i -> n - 1 - i: the axis column changes sign, the origin moves to the far end
            stored = np.flip(stored, axis)
            stored_affine[:3, 3] += stored_affine[:3, axis] * (shape[axis] - 1)
            stored_affine[:3, axis] *= -1
    stored = np.ascontiguousarray(np.transpose(stored, permutation))
    stored_affine[:3, :3] = stored_affine[:3, list(permutation)]
    back = resample_to_reference(stored, stored_affine, shape, affine, order=1)
    np.testing.assert_array_equal(back, array)


@PROPERTY_SETTINGS
@given(reference=grids(max_side=8), moving=grids(max_side=8), gradient=st.tuples(*[st.floats(-2, 2)] * 3))
def test_resampling_puts_every_value_at_its_world_position(reference, moving, gradient):
    """A linear intensity ramp over world space is reproduced exactly by trilinear resampling wherever the
    reference voxel falls inside the moving grid, for any relative rotation, spacing and shift."""
    (reference_shape, reference_affine), (moving_shape, moving_affine) = reference, moving
    moving_affine = moving_affine.copy()
    moving_affine[:3, 3] = reference_affine[:3, 3]  # the two grids share a corner, so they overlap
    ramp = np.asarray(gradient)

    def world(affine, shape):
        index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
        return index, index @ affine[:3, :3].T + affine[:3, 3]

    _index, moving_points = world(moving_affine, moving_shape)
    values = (moving_points @ ramp).reshape(moving_shape).astype(np.float64)
    resampled = resample_to_reference(values, moving_affine, reference_shape, reference_affine, order=1)
    _index, reference_points = world(reference_affine, reference_shape)
    inside_moving = (np.linalg.inv(moving_affine)[:3] @ np.c_[reference_points, np.ones(len(reference_points))].T).T
    interior = ((inside_moving >= -1e-6) & (inside_moving <= np.array(moving_shape) - 1 + 1e-6)).all(axis=1)
    expected = reference_points @ ramp
    np.testing.assert_allclose(resampled.reshape(-1)[interior], expected[interior], atol=1e-6 * (1 + 400 * 2))


@pytest.fixture(scope="module")
def slicer_scene():
    """A slicer-core scene with the Volumes logic (the same set-up as the Slicer tests' ``scene``)."""
    pytest.importorskip("slicer")
    import standins

    scene, _logics = standins.new_scene()
    yield scene
    scene.Clear(1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(grid=grids(), seed=st.integers(0, 2**16))
def test_scene_round_trip_keeps_every_voxel_at_its_world_position(slicer_scene, tmp_path, grid, seed):
    """NIfTI file -> Slicer scene (Volumes logic) -> array in the scene, and -> file exported from the scene:
    both give the original value at every original voxel's world position."""
    import slicer
    from BratsUNetSlicer import scene_io

    shape, affine = grid
    array = _volume(shape, seed)
    source = write_image(tmp_path / f"source-{seed}.nii.gz", array, affine, np.int16)
    node = scene_io.load_volume(source, f"case_{seed}_flair")
    try:
        # In the scene: Slicer's array is (K, J, I) and its IJK-to-RAS matrix places it.
        matrix = slicer.util.arrayFromVTKMatrix(_ijk_to_ras(node))
        in_scene = slicer.util.arrayFromVolume(node).transpose(2, 1, 0).astype(np.float32)
        np.testing.assert_array_equal(resample_to_reference(in_scene, matrix, shape, affine, order=0), array)
        # Out of the scene: the file Slicer writes, read by the library.
        exported = read_image(scene_io.export_volume(node, tmp_path / f"exported-{seed}.nii"))
        np.testing.assert_array_equal(resample_to_reference(exported.array, exported.affine, shape, affine, order=0),
                                      array)
    finally:
        slicer_scene.RemoveNode(node)


def _ijk_to_ras(node):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return matrix
