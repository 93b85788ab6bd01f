"""BraTS label maps and the nested tumour regions WT ⊇ TC ⊇ ET (ORIGINAL.md §3).

Label values: 1 necrotic / non-enhancing tumour core, 2 peritumoral edema, and enhancing tumour 4 (BraTS 2020
and earlier) or 3 (BraTS 2021 and later). Regions: whole tumour WT = {1, 2, ET}, tumour core TC = {1, ET},
enhancing tumour ET = {ET}. The network predicts one sigmoid channel per region, in the order WT, TC, ET.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from BratsUNetLib.config.validation import LABEL_RULES
from BratsUNetLib.errors import BratsUNetError, ImageError

REGIONS = ("WT", "TC", "ET")
REGION_NAMES = {"WT": "Whole tumor", "TC": "Tumor core", "ET": "Enhancing tumor"}


@dataclass(frozen=True)
class LabelScheme:
    """The label values of one BraTS convention."""

    name: str
    necrotic: int
    edema: int
    enhancing: int

    @property
    def labels(self) -> tuple[int, int, int]:
        """The tumour label values (background 0 excluded)."""
        return (self.necrotic, self.edema, self.enhancing)

    @property
    def regions(self) -> dict[str, tuple[int, ...]]:
        """Label values that make up each region, in the order of :data:`REGIONS`."""
        return {"WT": (self.necrotic, self.edema, self.enhancing), "TC": (self.necrotic, self.enhancing),
                "ET": (self.enhancing,)}


SCHEMES = {
    "brats2020": LabelScheme("brats2020", necrotic=1, edema=2, enhancing=4),
    "brats2021": LabelScheme("brats2021", necrotic=1, edema=2, enhancing=3),
}


@dataclass(frozen=True)
class LabelInfo:
    """What a label value means, for display: name and colour (RGB 0..255, the colours usual in BraTS figures)."""

    value: int
    name: str
    rgb: tuple[int, int, int]

    @property
    def rgb_float(self) -> tuple[float, float, float]:
        """The colour as 0..1 floats (Slicer segments, matplotlib)."""
        return tuple(c / 255.0 for c in self.rgb)


def get_scheme(scheme: str | LabelScheme) -> LabelScheme:
    """The :class:`LabelScheme` called ``scheme`` (or ``scheme`` itself); a clear error for unknown names."""
    if isinstance(scheme, LabelScheme):
        return scheme
    try:
        return SCHEMES[scheme]
    except KeyError:
        raise BratsUNetError(f"Unknown label scheme '{scheme}'; use one of {', '.join(SCHEMES)}.") from None


def region_names(scheme: str | LabelScheme = "brats2020") -> tuple[LabelInfo, ...]:
    """The three tumour labels of ``scheme`` with human names and colours, in label-value order."""
    s = get_scheme(scheme)
    return (LabelInfo(s.necrotic, "Necrotic tumor core", (255, 0, 0)),
            LabelInfo(s.edema, "Peritumoral edema", (0, 255, 0)),
            LabelInfo(s.enhancing, "Enhancing tumor", (255, 255, 0)))


def labels_to_regions(label_map: np.ndarray, scheme: str | LabelScheme = "brats2020") -> np.ndarray:
    """Boolean region masks ``(3, *label_map.shape)`` in the order WT, TC, ET."""
    s = get_scheme(scheme)
    label_map = np.asarray(label_map)
    return np.stack([np.isin(label_map, s.regions[region]) for region in REGIONS])


def regions_to_labels(probabilities: np.ndarray, threshold: float = 0.5,
                      scheme: str | LabelScheme = "brats2020", rule: str = "nested") -> np.ndarray:
    """BraTS label map (uint8, ``probabilities.shape[1:]``) from region probabilities ``(3, ...)`` WT, TC, ET.

    ``rule`` (:data:`LABEL_RULES`) ``nested``: a voxel is edema where WT > threshold, necrotic where TC >
    threshold as well, enhancing where ET > threshold as well: strictly greater, and an inner region counts only
    inside the outer ones. ``priority``: enhancing where ET >= threshold, else necrotic where TC >= threshold,
    else edema where WT >= threshold.
    """
    s = get_scheme(scheme)
    probabilities = np.asarray(probabilities)
    if probabilities.ndim < 2 or probabilities.shape[0] != len(REGIONS):
        raise ValueError(f"expected probabilities of shape (3, ...) for WT, TC, ET, got {probabilities.shape}")
    if rule not in LABEL_RULES:
        raise ValueError(f"unknown label rule {rule!r}; expected one of {', '.join(LABEL_RULES)}")
    if rule == "priority":
        whole, core, enhancing = (probabilities[index] >= threshold for index in range(3))
    else:
        whole = probabilities[0] > threshold
        core = whole & (probabilities[1] > threshold)
        enhancing = core & (probabilities[2] > threshold)
    label_map = np.zeros(probabilities.shape[1:], dtype=np.uint8)
    label_map[whole] = s.edema
    label_map[core] = s.necrotic
    label_map[enhancing] = s.enhancing
    return label_map


def flatten_labels(entry: int | Iterable) -> list[int]:
    """Label values of one config entry: an int, or a (possibly nested) list whose values merge."""
    if isinstance(entry, (list, tuple)):
        return [value for item in entry for value in flatten_labels(item)]
    return [int(entry)]


def label_channels(label_map: np.ndarray, labels: Sequence, hierarchy: bool = False) -> np.ndarray:
    """Training target channels ``(C, *label_map.shape)`` uint8 from the config's ``labels`` (ORIGINAL.md §1).

    Without ``hierarchy`` there is one channel per entry of ``labels``; an entry that is a list merges its
    values into one channel. With ``hierarchy`` (``setup_label_hierarchy``) channel ``i`` is the union of
    ``labels[i:]``, so ``[2, 1, 4]`` gives WT = {2, 1, 4}, TC = {1, 4}, ET = {4}.
    """
    label_map = np.asarray(label_map)
    if hierarchy:
        groups = [flatten_labels(list(labels[i:])) for i in range(len(labels))]
    else:
        groups = [flatten_labels(entry) for entry in labels]
    return np.stack([np.isin(label_map, group) for group in groups]).astype(np.uint8)


def check_label_values(label_map: np.ndarray, allowed: Iterable[int], path: str | os.PathLike) -> None:
    """Raise :class:`ImageError` naming ``path`` when ``label_map`` holds values outside ``allowed``."""
    label_map = np.asarray(label_map)
    if label_map.dtype == np.uint8:
        present = np.flatnonzero(np.bincount(label_map.ravel(), minlength=256))  # much faster than np.unique
    else:
        present = np.unique(label_map)
    allowed = sorted({int(v) for v in allowed})
    unexpected = sorted(set(int(v) for v in present) - set(allowed))
    if unexpected:
        raise ImageError(f"'{path}' contains label values {unexpected} outside the expected {allowed}; check the "
                         "label convention (BraTS 2020: 1, 2, 4; BraTS 2021 and later: 1, 2, 3).")


def remove_small_islands(label_map: np.ndarray, min_voxels: int) -> np.ndarray:
    """A copy of ``label_map`` without whole-tumour components smaller than ``min_voxels`` voxels.

    Components are those of the whole tumour (label > 0) with 26-connectivity: voxels touching by a face,
    an edge or a corner belong together, so a thin or diagonal part of a tumour is never cut off and
    removed; only truly separate specks are. All labels inside a removed component become 0.
    """
    label_map = np.asarray(label_map)
    components, count = ndimage.label(label_map > 0,
                                      structure=ndimage.generate_binary_structure(label_map.ndim, label_map.ndim))
    if count == 0:
        return label_map.copy()
    sizes = np.bincount(components.ravel())
    small = sizes < min_voxels
    small[0] = False  # background
    result = label_map.copy()
    result[small[components]] = 0
    return result
