"""Segmentation metrics with the legacy BraTS 2020 conventions (those of the challenge and of nnU-Net's BraTS evaluation).

Per case and region: Dice, HD95 (mm) and volumes (mL). No value is ever NaN:

- reference and prediction both empty: Dice 1, HD95 0;
- only one of them empty: Dice 0, HD95 373.12866 mm (the diagonal of a 240×240×155 mm image);
- both present: Dice 2|P∩R| / (|P| + |R|), HD95 the 95th percentile of the surface distances of both directions
  pooled together.

Surfaces are the voxels removed by one 6-connected erosion (voxels on the array border count as surface);
distances are Euclidean in mm using the voxel spacing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from BratsUNetLib.data.labels import REGIONS, LabelScheme, labels_to_regions

# HD95 of a case where exactly one of prediction and reference is empty: sqrt(240² + 240² + 155²) mm.
MISSING_HD95_MM = math.sqrt(240**2 + 240**2 + 155**2)


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice overlap of two masks of the same shape; 1 when both are empty, 0 when only one is.

    Counted with numpy rather than ``monai.metrics.compute_dice(ignore_empty=False)``, which gives the same
    values but needs one-hot float tensors and sums in float32; integer counts are exact and cheaper.
    """
    prediction, reference = _masks(prediction, reference)
    total = int(np.count_nonzero(prediction)) + int(np.count_nonzero(reference))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(prediction & reference)) / total


def hd95(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float]) -> float:
    """95th percentile Hausdorff distance in mm, both directions pooled (legacy BraTS 2020).

    Written here rather than with ``monai.metrics.compute_hausdorff_distance``: MONAI takes the maximum of the
    two directed 95th percentiles instead of the percentile of the pooled distances, and returns NaN when a
    mask is empty, where BraTS 2020 uses 0 or :data:`MISSING_HD95_MM`.
    """
    prediction, reference = _masks(prediction, reference)
    has_prediction, has_reference = prediction.any(), reference.any()
    if not has_prediction and not has_reference:
        return 0.0
    if not has_prediction or not has_reference:
        return MISSING_HD95_MM
    # Only the box around both masks matters: it holds every surface voxel, and the erosion treats what lies
    # outside it as background, which it is. This keeps the distance transforms small.
    box = _bounding_box(prediction | reference)
    prediction_surface = _surface(prediction[box])
    reference_surface = _surface(reference[box])
    sampling = [float(s) for s in spacing]
    # Distance from each surface voxel of one mask to the nearest surface voxel of the other.
    to_reference = ndimage.distance_transform_edt(~reference_surface, sampling=sampling)[prediction_surface]
    to_prediction = ndimage.distance_transform_edt(~prediction_surface, sampling=sampling)[reference_surface]
    return float(np.percentile(np.concatenate([to_reference, to_prediction]), 95))


def volume_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of a mask in mL: voxel count × voxel volume (mm³) / 1000."""
    return int(np.count_nonzero(mask)) * float(np.prod(spacing)) / 1000.0


def region_metrics(prediction_labels: np.ndarray, reference_labels: np.ndarray, spacing: Sequence[float],
                   scheme: str | LabelScheme = "brats2020") -> dict[str, dict[str, float]]:
    """Metrics of two BraTS label maps on the same grid, per region WT, TC, ET.

    ``spacing``: voxel size in mm per array axis. Returns ``{region: {"dice", "hd95" (mm),
    "volume_prediction_ml", "volume_reference_ml"}}``.
    """
    prediction_labels, reference_labels = np.asarray(prediction_labels), np.asarray(reference_labels)
    if prediction_labels.shape != reference_labels.shape:
        raise ValueError(f"label maps differ in shape: {prediction_labels.shape} vs {reference_labels.shape}")
    predicted = labels_to_regions(prediction_labels, scheme)
    expected = labels_to_regions(reference_labels, scheme)
    return {region: {"dice": dice(predicted[i], expected[i]),
                     "hd95": hd95(predicted[i], expected[i], spacing),
                     "volume_prediction_ml": volume_ml(predicted[i], spacing),
                     "volume_reference_ml": volume_ml(expected[i], spacing)}
            for i, region in enumerate(REGIONS)}


def mean_metrics(cases: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """The mean over cases of each region's metrics (as returned by :func:`region_metrics`)."""
    if not cases:
        return {}
    return {region: {name: float(np.mean([case[region][name] for case in cases])) for name in cases[0][region]}
            for region in cases[0]}


def _masks(prediction: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prediction, reference = np.asarray(prediction, dtype=bool), np.asarray(reference, dtype=bool)
    if prediction.shape != reference.shape:
        raise ValueError(f"masks differ in shape: {prediction.shape} vs {reference.shape}")
    return prediction, reference


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a 6-neighbour outside it (or on the array border)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Slices of the smallest box holding every True voxel of a non-empty mask."""
    box = []
    for axis in range(mask.ndim):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(int(present[0]), int(present[-1]) + 1))
    return tuple(box)
