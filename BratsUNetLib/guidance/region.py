"""Which voxels a click recomputes: a box around the clicks, grown to hold the part of the segmentation that a
click is on, so a click answers in the time of one network pass over a small crop instead of the whole volume."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from BratsUNetLib.data.labels import REGIONS
from BratsUNetLib.guidance.clicks import VoxelClick


def refinement_box(clicks: Sequence[VoxelClick], prior_regions: np.ndarray, *, margin: int, max_edge: int
                   ) -> tuple[slice, slice, slice]:
    """The box (slices of the grid of ``prior_regions``, ``(3, X, Y, Z)`` bool WT, TC, ET) that the clicks
    recompute: each click with ``margin`` voxels around it, and the connected part of the click's region it lies
    in (so a negative click on a false region reaches its whole extent), at most ``max_edge`` voxels per edge
    around the clicks' centre."""
    shape = np.asarray(prior_regions.shape[1:])
    points = np.array([click.index for click in clicks])
    low, high = points.min(axis=0) - margin, points.max(axis=0) + margin + 1
    centre = (points.min(axis=0) + points.max(axis=0)) // 2
    # Only the part of the volume the box may reach is searched: a BraTS-size volume would cost a labelling of
    # 9 M voxels per click, the window at most (2 max_edge)³.
    window = tuple(slice(max(0, int(c) - max_edge), min(int(n), int(c) + max_edge)) for c, n in zip(centre, shape))
    start = np.array([s.start for s in window])
    for click in clicks:
        mask = np.asarray(prior_regions[REGIONS.index(click.region)][window], bool)
        inside = tuple(np.asarray(click.index) - start)
        if not all(0 <= i < n for i, n in zip(inside, mask.shape)) or not mask[inside]:
            continue
        components, _count = ndimage.label(mask)
        extent = np.argwhere(components == components[inside]) + start
        low, high = np.minimum(low, extent.min(axis=0) - 2), np.maximum(high, extent.max(axis=0) + 3)
    low = np.maximum(np.maximum(low, centre - max_edge // 2), 0)
    high = np.minimum(np.minimum(high, low + max_edge), shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))  # type: ignore[return-value]


def fixed_size_box(box: tuple[slice, slice, slice], edge: int, shape: tuple[int, ...]) -> tuple[slice, slice, slice]:
    """``box`` grown around its centre to ``edge`` voxels per axis (the whole axis where ``shape`` is shorter).

    Every click then runs the network on one input shape, which an exported backend (OpenVINO, ONNX Runtime)
    converts once and reuses; a box of another size per click would convert again each time."""
    grown = []
    for part, size in zip(box, shape):
        length = min(edge, size)
        start = min(max(0, (part.start + part.stop - length) // 2), size - length)
        grown.append(slice(start, start + length))
    return tuple(grown)  # type: ignore[return-value]


def keep_unclicked_regions(probabilities: np.ndarray, prior_regions: np.ndarray, clicked: set[str] | frozenset[str]
                           ) -> np.ndarray:
    """The network's region probabilities ``(3, X, Y, Z)`` (WT, TC, ET) for the ``clicked`` regions and the
    regions inside them (a TC click: TC and ET; a WT click: all three); every region outside them keeps the
    current segmentation (``prior_regions``, same shape, bool), but for what the nesting WT ⊇ TC ⊇ ET demands: it
    grows with what a clicked inner region gains.

    A click says which region it is about (the panel's region selector, ``:TC`` on the command line). A TC click
    that also moved the box's edema boundary would change what the user did not ask to change; on held-out
    phantoms such side effects made the mean WT Dice fall after some clicks (benchmarks/README.md §9). The
    regions inside the clicked one do follow the network: a core's enhancing rim is part of what a core click
    corrects, and keeping it as it was cost ET Dice there.
    """
    first = min(REGIONS.index(region) for region in clicked) if clicked else len(REGIONS)
    answer = probabilities.copy()
    for outer in range(first - 1, -1, -1):  # each unclicked outer region: as it was, plus its inner region
        answer[outer] = np.maximum(prior_regions[outer].astype(probabilities.dtype), answer[outer + 1])
    return answer
