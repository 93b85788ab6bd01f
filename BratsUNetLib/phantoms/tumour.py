"""Gliomas for synthetic BraTS-style cases: where they grow, their shape, their labels and their mass effect.

A lesion starts in deep white matter. Its core is a lobulated blob (a few overlapping random ellipsoids with a
noisy boundary); depending on the lesion's kind the core is an enhancing rim of varying thickness around
necrosis (labels 4 around 1), solid enhancing tumour (4 only) or non-enhancing tumour (1 only). Edema (2)
surrounds the core: at least one voxel everywhere, and further along white matter than into grey matter or
CSF. The growing core pushes the surrounding tissue outwards (mass effect).

Sizes are drawn in template millimetres (core diameter 1..5 cm) and scaled with the brain, so a 64³ phantom
holds a scaled-down tumour in a scaled-down brain; a floor of a few voxels keeps tiny grids meaningful.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from BratsUNetLib.phantoms.anatomy import Placement, Template, smooth_noise

NECROTIC, EDEMA, ENHANCING = 1, 2, 4  # BraTS 2020 label values
# Soft tumour compartments for the image contrasts, in the order of the weights returned by draw_lesions.
COMPARTMENTS = ("edema", "enhancing", "necrosis", "non_enhancing")

P_NO_ENHANCING = 0.15  # share of cases whose tumours do not enhance (lower-grade looking)
P_SOLID = 0.15  # share of enhancing lesions without necrosis
P_MULTIFOCAL = 0.15
MIN_RADIUS_VOXELS = 2.5  # smaller cores would be a handful of voxels on small grids


@dataclass(frozen=True)
class Lesion:
    """One tumour, in output voxels (1 mm): ``centre`` ``(3,)``, mean core ``radius``, mean enhancing ``rim``
    thickness, how far ``edema`` reaches beyond the core into white matter, its ``kind`` of core
    (``"necrotic"``: enhancing rim around necrosis, ``"solid"``: enhancing throughout, ``"non_enhancing"``) and
    the radius of tissue its mass effect displaces (``push``)."""

    centre: np.ndarray
    radius: float
    rim: float
    edema: float
    kind: str
    push: float


def plan_lesions(template: Template, placement: Placement, rng: np.random.Generator) -> list[Lesion]:
    """One lesion, or (with probability :data:`P_MULTIFOCAL`) two or three, seeded in deep white matter."""
    no_enhancing = rng.random() < P_NO_ENHANCING
    count = int(rng.integers(2, 4)) if rng.random() < P_MULTIFOCAL else 1
    lesions: list[Lesion] = []
    seeds_mm: list[np.ndarray] = []
    radii_mm: list[float] = []
    for index in range(count):
        # Core radius in template mm: 5..25 (1..5 cm diameter) for the main lesion, smaller satellites.
        radius_mm = 5 + 20 * rng.beta(1.6, 1.6) if index == 0 else rng.uniform(4, 11)
        candidates = template.deep_wm_mm
        if seeds_mm:  # satellites lie apart from the lesions already placed
            gaps = np.min([np.linalg.norm(candidates - s, axis=1) - r for s, r in zip(seeds_mm, radii_mm)], axis=0)
            candidates = candidates[gaps > radius_mm + 8] if np.any(gaps > radius_mm + 8) else candidates
        seed_mm = candidates[rng.integers(len(candidates))]
        seeds_mm.append(seed_mm)
        radii_mm.append(radius_mm)

        radius = max(radius_mm * placement.scale, MIN_RADIUS_VOXELS)
        if no_enhancing:
            kind = "non_enhancing"
        else:
            kind = "solid" if rng.random() < P_SOLID else "necrotic"
        lesions.append(Lesion(
            centre=placement.to_voxels(seed_mm[None])[0],
            radius=radius,
            rim=max(rng.uniform(1.5, 5.0) * placement.scale, 1.0),
            edema=rng.uniform(0.3, 1.4) * radius + 2 * placement.scale,
            kind=kind,
            push=radius * rng.uniform(0.5, 0.9),
        ))
    return lesions


def push_tissue_away(coords: np.ndarray, lesions: list[Lesion]) -> None:
    """Mass effect: change output voxel coordinates ``coords`` (float32 ``(3, ...)``) in place so that each
    output voxel samples the tissue that the growing core has pushed there.

    Tissue at distance ``s`` from the lesion centre moves to ``r`` with ``r³ = s³ + push³·exp(-(r/L)²)``: a ball of
    radius ``push`` is added (volume conserving near the lesion) and the effect fades over ``L`` (twice the
    tumour's reach), so the brain outline stays put. The mapping is monotonic in ``r``, so tissue never folds.
    """
    for lesion in lesions:
        reach = 2 * (lesion.radius + lesion.edema)
        offset = coords - lesion.centre.astype(np.float32).reshape(3, *([1] * (coords.ndim - 1)))
        r = np.sqrt(np.einsum("i...,i...->...", offset, offset))
        source_cubed = r ** 3 - np.float32(lesion.push ** 3) * np.exp(-(r / np.float32(reach)) ** 2)
        source = np.cbrt(np.maximum(source_cubed, 0))
        ratio = np.divide(source, r, out=np.zeros_like(r), where=r > 0)
        coords -= offset * (1 - ratio)


def draw_lesions(lesions: list[Lesion], tissues: np.ndarray, brain: np.ndarray, origin: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Labels and soft compartments of all lesions over a box of the output grid.

    ``tissues``: float32 ``(3, *box)`` CSF/GM/WM probabilities after the mass effect; ``brain``: bool ``box``;
    ``origin``: the box's first voxel in the output grid. Returns ``label`` (uint8 ``box``, values 0, 1, 2, 4)
    and ``weights`` (float32 ``(4, *box)``, 0..1 per compartment of :data:`COMPARTMENTS`, edges softened by
    partial volume). Cores stay two voxels inside the brain so that edema always separates them from the
    background.
    """
    box_shape = brain.shape
    priority = np.zeros(box_shape, dtype=np.uint8)  # 0 background < 1 edema < 2 necrosis < 3 enhancing
    weights = np.zeros((len(COMPARTMENTS), *box_shape), dtype=np.float32)
    inner_brain = ndimage.binary_erosion(brain, iterations=2)
    for lesion in lesions:
        centre = lesion.centre - origin
        half = int(np.ceil(lesion.radius * 1.8 + lesion.edema * 1.5)) + 3
        window = tuple(slice(max(int(c) - half, 0), min(int(c) + half + 1, n)) for c, n in zip(centre, box_shape))
        local_centre = centre - [w.start for w in window]
        grid = np.ogrid[tuple(slice(0, w.stop - w.start) for w in window)]
        shape = tuple(w.stop - w.start for w in window)

        core = _largest_component(_lobulated_core(grid, shape, local_centre, lesion.radius, rng) & inner_brain[window])
        if not core.any():
            continue
        labels = _core_labels(core, lesion, rng)
        edema = _edema(core, lesion, tissues[(slice(None), *window)], brain[window], rng)

        local = np.where(labels == ENHANCING, 3, np.where(labels == NECROTIC, 2, np.where(edema, 1, 0)))
        np.maximum(priority[window], local.astype(np.uint8), out=priority[window])
        masks = (edema & ~core, labels == ENHANCING,
                 (labels == NECROTIC) & (lesion.kind == "necrotic"),
                 (labels == NECROTIC) & (lesion.kind == "non_enhancing"))
        for weight, mask in zip(weights, masks):
            np.maximum(weight[window], ndimage.gaussian_filter(mask.astype(np.float32), 0.6), out=weight[window])
    label = np.array([0, EDEMA, NECROTIC, ENHANCING], dtype=np.uint8)[priority]
    return label, weights


def _lobulated_core(grid: list[np.ndarray], shape: tuple[int, ...], centre: np.ndarray, radius: float,
                    rng: np.random.Generator) -> np.ndarray:
    """A lobulated blob of mean radius ``radius`` around ``centre``: the union of a main ellipsoid and up to
    three lobes, with a boundary roughened by smooth noise."""
    distance = np.full(shape, np.inf, dtype=np.float32)
    lobes = [(centre, radius)]
    for _ in range(int(rng.integers(0, 4))):
        direction = rng.standard_normal(3)
        lobes.append((centre + direction / np.linalg.norm(direction) * radius * rng.uniform(0.4, 0.8),
                      radius * rng.uniform(0.4, 0.7)))
    for lobe_centre, lobe_radius in lobes:
        axes = lobe_radius * rng.uniform(0.75, 1.25, size=3)
        turn = Rotation.random(random_state=rng).as_matrix()
        offsets = [g - c for g, c in zip(grid, lobe_centre)]
        # Coordinates along the ellipsoid's own axes, divided by its semi-axes: inside when the norm is < 1.
        norm_sq = sum(((turn[0, k] * offsets[0] + turn[1, k] * offsets[1] + turn[2, k] * offsets[2]) / axes[k]) ** 2
                      for k in range(3))
        np.minimum(distance, np.sqrt(norm_sq, dtype=np.float32), out=distance)
    roughness = smooth_noise(shape, max(radius / 2.5, 1.5), rng)
    return distance < 1 + 0.18 * roughness


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected part of ``mask``: a rough boundary can pinch off specks that are no lesion."""
    components, count = ndimage.label(mask)
    if count <= 1:
        return mask
    return components == np.argmax(np.bincount(components.ravel())[1:]) + 1


def _core_labels(core: np.ndarray, lesion: Lesion, rng: np.random.Generator) -> np.ndarray:
    """Labels 1 / 4 inside ``core``: an enhancing rim of noisy thickness (at least one voxel, so necrosis never
    touches the edema) around necrosis, or all 4 (solid) or all 1 (non-enhancing)."""
    labels = np.zeros(core.shape, dtype=np.uint8)
    if lesion.kind == "non_enhancing":
        labels[core] = NECROTIC
        return labels
    labels[core] = ENHANCING
    if lesion.kind == "necrotic":
        depth = ndimage.distance_transform_edt(core)
        thickness = np.maximum(lesion.rim * (1 + 0.5 * smooth_noise(core.shape, max(lesion.radius / 3, 1.5), rng)), 1)
        labels[core & (depth > thickness)] = NECROTIC
    return labels


def _edema(core: np.ndarray, lesion: Lesion, tissues: np.ndarray, brain: np.ndarray,
           rng: np.random.Generator) -> np.ndarray:
    """Edema around ``core``: a ring of at least one voxel, then as far as ``lesion.edema`` along white matter
    (less into grey matter, not into CSF), with an irregular front; only parts connected to the core."""
    distance = ndimage.distance_transform_edt(~core)
    csf, _, wm = tissues
    front = np.float32(lesion.edema) * (0.3 + 0.9 * wm) * (1 + 0.3 * smooth_noise(core.shape, 4.0, rng))
    spread = (distance < front) & (csf < 0.5)
    region = ((distance <= 1.5) | spread) & brain
    components, _ = ndimage.label(region)
    touching = np.unique(components[core])
    return np.isin(components, touching[touching > 0]) & ~core
