"""Where a user would click next: in the largest error of the current segmentation, at its innermost voxel.

For each region (WT, TC, ET) the errors are the missed voxels (in the reference, not in the segmentation: a
positive click) and the false ones (the other way round: a negative click). The largest connected error of all
regions gets the click. Without ``rng`` it is placed at the error's innermost voxel (largest distance to its
border): a deterministic simulator for benchmarks. With ``rng`` (training) the voxel is drawn with a probability
growing with that distance, as DeepEdit's ``AddRandomGuidanceDeepEditd`` draws it; DeepEdit's own transform is not
used because it compares exclusive label values, and BraTS regions are nested (an ET voxel is also TC and WT).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from BratsUNetLib.data.labels import REGIONS
from BratsUNetLib.guidance.clicks import VoxelClick


def next_click(segmentation: np.ndarray, reference: np.ndarray, rng: np.random.Generator | None = None,
               min_voxels: int = 1) -> VoxelClick | None:
    """The click that corrects the largest error of ``segmentation`` against ``reference``, both region masks
    ``(3, X, Y, Z)`` bool in the order WT, TC, ET; None when no error has ``min_voxels`` voxels."""
    found = largest_error(segmentation, reference, min_voxels)
    return None if found is None else click_in(*found, rng=rng)


def largest_error(segmentation: np.ndarray, reference: np.ndarray, min_voxels: int = 1
                  ) -> tuple[np.ndarray, str, bool] | None:
    """The largest connected error of ``segmentation`` (see :func:`next_click`) as (its mask, its region, whether
    a click on it is positive); None when no error has ``min_voxels`` voxels."""
    best: tuple[int, np.ndarray, str, bool] | None = None
    for channel, region in enumerate(REGIONS):
        predicted, truth = np.asarray(segmentation[channel], bool), np.asarray(reference[channel], bool)
        for positive, error in ((True, truth & ~predicted), (False, predicted & ~truth)):
            components, count = ndimage.label(error)
            if not count:
                continue
            sizes = np.bincount(components.ravel())[1:]
            largest = int(np.argmax(sizes))
            if sizes[largest] >= min_voxels and (best is None or sizes[largest] > best[0]):
                best = (int(sizes[largest]), components == largest + 1, region, positive)
    return None if best is None else best[1:]


def click_in(component: np.ndarray, region: str, positive: bool, rng: np.random.Generator | None = None
             ) -> VoxelClick:
    """A click on the error ``component`` (bool mask): at its innermost voxel, or drawn with ``rng``."""
    # Padded by one voxel so that an error touching the volume's edge still has a border there.
    distance = ndimage.distance_transform_edt(np.pad(component, 1))[1:-1, 1:-1, 1:-1]
    if rng is None:
        index = np.unravel_index(int(np.argmax(distance)), distance.shape)
    else:
        inside = np.flatnonzero(component)
        weights = np.expm1(distance.ravel()[inside])
        index = np.unravel_index(int(rng.choice(inside, p=weights / weights.sum())), distance.shape)
    return VoxelClick(tuple(int(v) for v in index), region, positive)  # type: ignore[arg-type]
