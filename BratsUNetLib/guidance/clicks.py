"""A click: a point in RAS millimetres, the region it is about (WT, TC or ET) and whether the point belongs to it.

A positive click says "this point is in the region", a negative one "it is not". On the command line a click is
``R,A,S`` or ``R,A,S:REGION`` (WT when no region is given); a BraTS label value may stand for the region whose
innermost label it is when adding (1 necrotic core: TC, 2 edema: WT, 3 or 4 enhancing tumour: ET).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from BratsUNetLib.data.labels import REGIONS
from BratsUNetLib.errors import BratsUNetError

# A label value given as a click's region, when adding: the region of which that label is the innermost part.
LABEL_REGIONS = {"1": "TC", "2": "WT", "3": "ET", "4": "ET"}


@dataclass(frozen=True)
class Click:
    """``point`` (R, A, S) in mm; ``region`` one of WT, TC, ET; ``positive``: the point is in the region."""

    point: tuple[float, float, float]
    region: str
    positive: bool


@dataclass(frozen=True)
class VoxelClick:
    """A click on a voxel grid: ``index`` (i, j, k) of the reference image."""

    index: tuple[int, int, int]
    region: str
    positive: bool


def parse_click(text: str, positive: bool) -> Click:
    """``R,A,S`` or ``R,A,S:REGION`` (see the module docstring) as a :class:`Click`; one-line errors."""
    where, _, region = str(text).partition(":")
    region = region.strip().upper() or "WT"
    if region in LABEL_REGIONS:
        if not positive:
            raise BratsUNetError(f"'{text}': a label value names a region only for --add; for --remove name the "
                                 "region the point is not in (WT, TC or ET).")
        region = LABEL_REGIONS[region]
    if region not in REGIONS:
        raise BratsUNetError(f"'{text}': unknown region '{region}'; use WT, TC or ET (or, for --add, a label 1, 2, "
                             "3 or 4).")
    try:
        point = tuple(float(value) for value in where.split(","))
    except ValueError:
        point = ()
    if len(point) != 3 or not all(math.isfinite(value) for value in point):
        raise BratsUNetError(f"'{text}' is not a point: give R,A,S in millimetres, e.g. 12.5,-30,8:TC.")
    return Click(point, region, positive)  # type: ignore[arg-type]


def to_voxel_clicks(clicks: Sequence[Click], affine: np.ndarray, shape: Sequence[int]) -> list[VoxelClick]:
    """The clicks on the grid of ``affine`` (4×4 voxel to RAS mm) and ``shape``: each point's nearest voxel.

    A point outside the image is refused, naming it (a click the user cannot see in the image is a mistake).
    """
    to_voxel = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    found = []
    for click in clicks:
        index = np.rint(to_voxel @ np.array([*click.point, 1.0]))[:3].astype(int)
        if np.any(index < 0) or np.any(index >= np.asarray(shape[:3])):
            raise BratsUNetError(f"The click at R,A,S {','.join(f'{v:g}' for v in click.point)} mm lies outside the "
                                 "image; place it on the tumour.")
        found.append(VoxelClick(tuple(int(v) for v in index), click.region, click.positive))  # type: ignore[arg-type]
    return found
