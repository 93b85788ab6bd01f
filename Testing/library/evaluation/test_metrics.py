"""Legacy BraTS 2020 metrics: golden cases of METRICS.md and agreement with independent computations."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from scipy.spatial import cKDTree

from BratsUNetLib.evaluation.metrics import MISSING_HD95_MM, dice, hd95, mean_metrics, region_metrics, volume_ml

SHAPE = (40, 40, 40)
ISOTROPIC = (1.0, 1.0, 1.0)


def _ball(centre, radius=8, shape=SHAPE) -> np.ndarray:
    grid = np.indices(shape)
    return ((grid - np.array(centre)[:, None, None, None]) ** 2).sum(0) <= radius**2


def test_missing_segmentation_constant_is_the_brats_image_diagonal():
    assert MISSING_HD95_MM == pytest.approx(373.12866, abs=1e-5)


def test_golden_empty_conventions():
    empty, ball = np.zeros(SHAPE, bool), _ball((20, 20, 20))
    assert (dice(empty, empty), hd95(empty, empty, ISOTROPIC)) == (1.0, 0.0)
    assert (dice(ball, empty), hd95(ball, empty, ISOTROPIC)) == (0.0, MISSING_HD95_MM)  # false positive
    assert (dice(empty, ball), hd95(empty, ball, ISOTROPIC)) == (0.0, MISSING_HD95_MM)  # miss


def test_golden_shifted_ball():
    reference, prediction = _ball((20, 20, 20)), _ball((22, 20, 20))
    assert dice(prediction, reference) == pytest.approx(0.815078, abs=1e-6)
    assert hd95(prediction, reference, ISOTROPIC) == pytest.approx(2.0, abs=1e-9)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_hd95_pools_both_directions_unlike_monai():
    from monai.metrics import compute_hausdorff_distance

    reference = _ball((14, 20, 20), radius=9)
    prediction = reference.copy()
    prediction[31:35, 31:35, 31:35] = True  # a small far-away false positive
    assert hd95(prediction, reference, ISOTROPIC) == 0.0
    as_tensor = lambda mask: torch.from_numpy(mask)[None, None]  # noqa: E731
    monai = compute_hausdorff_distance(as_tensor(prediction), as_tensor(reference), percentile=95).item()
    assert monai > 10.0  # the maximum of the directed percentiles: what BraTS 2020 did not use


def test_spacing_scales_distances_and_volumes():
    reference = _ball((20, 20, 20))
    assert volume_ml(reference, (1.0, 1.0, 2.5)) == pytest.approx(reference.sum() * 2.5 / 1000)
    # a pure shift along the stretched axis: the surface distances are multiples of that axis' spacing
    slab = np.zeros((10, 10, 12), bool)
    slab[2:8, 2:8, 2:6] = True
    shifted = np.roll(slab, 3, axis=2)
    assert hd95(shifted, slab, (1.0, 1.0, 2.0)) == pytest.approx(6.0)


def test_region_metrics_on_label_maps():
    reference = np.zeros(SHAPE, np.uint8)
    reference[_ball((20, 20, 20), 10)] = 2
    reference[_ball((20, 20, 20), 6)] = 1  # no enhancing tumour in the reference
    prediction = reference.copy()
    prediction[20, 20, 20] = 4  # one false-positive ET voxel costs a full point
    spacing = (1.0, 1.0, 2.0)
    metrics = region_metrics(prediction, reference, spacing)
    assert list(metrics) == ["WT", "TC", "ET"]
    assert metrics["WT"]["dice"] == 1.0 and metrics["WT"]["hd95"] == 0.0
    assert metrics["TC"]["dice"] == 1.0
    assert metrics["ET"] == {"dice": 0.0, "hd95": MISSING_HD95_MM, "volume_prediction_ml": pytest.approx(0.002),
                             "volume_reference_ml": 0.0}
    assert metrics["WT"]["volume_reference_ml"] == pytest.approx((reference > 0).sum() * 2.0 / 1000)
    brats2021 = region_metrics(np.where(prediction == 4, 3, prediction), reference, spacing, "brats2021")
    assert brats2021["ET"]["dice"] == 0.0 and brats2021["TC"]["dice"] == 1.0


def test_mean_metrics_averages_each_region_and_metric():
    a = {"WT": {"dice": 1.0, "hd95": 0.0}}
    b = {"WT": {"dice": 0.5, "hd95": 4.0}}
    assert mean_metrics([a, b]) == {"WT": {"dice": 0.75, "hd95": 2.0}}


# --- agreement with an independent computation on random shapes -----------------------------------------------

def _random_mask(seed: int, shape, fraction: float) -> np.ndarray:
    """A blobby random mask (thresholded smoothed noise), which may touch the array border."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), sigma=1.5)
    return noise > np.quantile(noise, 1.0 - fraction)


def _surface_points_mm(mask: np.ndarray, spacing) -> np.ndarray:
    """Coordinates (mm) of voxels with a face neighbour outside the mask, the array border counting as outside."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[1:-1, 1:-1, 1:-1]
    all_neighbours_in = np.ones_like(inner)
    for axis in range(3):
        for step in (-1, 1):
            all_neighbours_in &= np.roll(padded, step, axis=axis)[1:-1, 1:-1, 1:-1]
    return np.argwhere(inner & ~all_neighbours_in) * np.asarray(spacing)


def _brute_force_hd95(prediction, reference, spacing) -> float:
    p, r = _surface_points_mm(prediction, spacing), _surface_points_mm(reference, spacing)
    distances = np.concatenate([cKDTree(r).query(p)[0], cKDTree(p).query(r)[0]])
    return float(np.percentile(distances, 95))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000),
       shape=st.tuples(st.integers(6, 24), st.integers(6, 24), st.integers(4, 16)),
       spacing=st.tuples(st.floats(0.4, 3.0), st.floats(0.4, 3.0), st.floats(0.4, 5.0)),
       fractions=st.tuples(st.floats(0.01, 0.5), st.floats(0.01, 0.5)))
def test_agrees_with_brute_force_surface_distances(seed, shape, spacing, fractions):
    prediction = _random_mask(seed, shape, fractions[0])
    reference = _random_mask(seed + 1, shape, fractions[1])
    assume_nonempty = prediction.any() and reference.any()
    expected_dice = 2 * (prediction & reference).sum() / (prediction.sum() + reference.sum())
    assert dice(prediction, reference) == pytest.approx(expected_dice, abs=1e-6)
    if assume_nonempty:
        assert hd95(prediction, reference, spacing) == pytest.approx(_brute_force_hd95(prediction, reference, spacing),
                                                                     abs=1e-3)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), fractions=st.tuples(st.floats(0.0, 0.3), st.floats(0.0, 0.3)))
def test_dice_agrees_with_monai_without_ignoring_empty_references(seed, fractions):
    from monai.metrics import compute_dice

    shape = (12, 10, 8)
    prediction = _random_mask(seed, shape, fractions[0]) if fractions[0] > 0.005 else np.zeros(shape, bool)
    reference = _random_mask(seed + 7, shape, fractions[1]) if fractions[1] > 0.005 else np.zeros(shape, bool)
    as_tensor = lambda mask: torch.from_numpy(mask.astype(np.float32))[None, None]  # noqa: E731
    expected = compute_dice(as_tensor(prediction), as_tensor(reference), include_background=True,
                            ignore_empty=False).item()
    assert dice(prediction, reference) == pytest.approx(expected, abs=1e-6)
