"""What a guided network sees: the image channels, one smoothed click map per region and sign, and the prior.

The click maps are made by MONAI DeepEdit's :class:`~monai.apps.deepedit.transforms.AddGuidanceSignalDeepEditd`
(a Gaussian of ``sigma`` voxels around each click, scaled to 0..1), one "label" per region and sign. DeepEdit's
labels are exclusive classes; BraTS regions are nested (WT ⊇ TC ⊇ ET), so each region has a positive and a
negative map of its own instead of one map per class plus background. The prior (the current segmentation as
region masks) lets the network keep what no click is about.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai.apps.deepedit.transforms import AddGuidanceSignalDeepEditd

from BratsUNetLib.data.labels import REGIONS
from BratsUNetLib.guidance.clicks import VoxelClick

GUIDANCE_CHANNELS = tuple(f"{region}{sign}" for region in REGIONS for sign in "+-")  # WT+, WT-, TC+, ...
PRIOR_CHANNELS = tuple(f"prior {region}" for region in REGIONS)


def guidance_points(clicks: Sequence[VoxelClick], shape: Sequence[int],
                    offset: Sequence[int] = (0, 0, 0)) -> dict[str, list[list[int]]]:
    """The clicks as DeepEdit's guidance: channel name -> voxel indices in a crop of ``shape`` starting at
    ``offset``. Clicks outside the crop are left out: DeepEdit would move them onto its border."""
    points: dict[str, list[list[int]]] = {name: [] for name in GUIDANCE_CHANNELS}
    for click in clicks:
        inside = [index - start for index, start in zip(click.index, offset)]
        if all(0 <= value < size for value, size in zip(inside, shape)):
            points[f"{click.region}{'+' if click.positive else '-'}"].append(inside)
    return points


def guided_input(image: np.ndarray, prior: np.ndarray, clicks: Sequence[VoxelClick], *, sigma: float,
                 offset: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """The network's input ``(C + 9, X, Y, Z)`` float32 from ``image`` ``(C, X, Y, Z)`` (already normalized),
    the current segmentation ``prior`` as region masks ``(3, X, Y, Z)`` (WT, TC, ET) on the same voxels, and the
    clicks (indices in the full grid; ``offset`` is where ``image`` starts in it, for a crop). ``sigma`` is the
    click maps' width in voxels."""
    image = np.asarray(image, dtype=np.float32)
    add_signals = AddGuidanceSignalDeepEditd(keys="image", sigma=sigma, number_intensity_ch=image.shape[0])
    points = guidance_points(clicks, image.shape[1:], offset)
    with_signals = add_signals({"image": image, "guidance": points})["image"]
    return np.concatenate([np.asarray(with_signals, dtype=np.float32), np.asarray(prior, dtype=np.float32)], axis=0)
