"""Healthy brain anatomy for synthetic BraTS-style cases.

The anatomy is real: the MNI ICBM152 2009 (symmetric, release a) grey- and white-matter probability maps and
skull-stripped T1 template that the ``nilearn`` package ships inside its wheel (1 mm, RAS, 197×233×189). They
are read straight from the package's data folder, without importing nilearn and without any download.
CSF is what the brain mask holds beyond grey and white matter (ventricles, sulci, the cortical surface).

Each case places the template brain in the output field of view with its own pose (scaled to fit the grid,
random per-axis scaling, a small rotation and shift) plus a smooth random displacement, so no two cases share
the same anatomy. Coordinates follow one path: output voxel → (mass effect, smooth displacement, both in
output voxels = mm) → linear map to template RAS mm → template voxel, where the tissue maps are sampled.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from BratsUNetLib.errors import BratsUNetError

TEMPLATE_PACKAGE = "nilearn"
TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
TISSUES = ("csf", "gm", "wm")

# Share of each axis of the field of view that the brain fills before the per-case scaling (0.86..1): BraTS
# brains nearly fill the 155 axial slices and leave room left/right and front/back.
FILL = 0.94
# White matter this probable (of 255) counts as deep white matter, where tumours start.
DEEP_WM = 230
# Tumours start above this template height (RAS z, mm): gliomas are mostly supratentorial, and this keeps
# them out of the cerebellum and brain stem.
SUPRATENTORIAL_Z_MM = 0.0


@dataclass(frozen=True)
class Template:
    """The brain template at one resolution.

    ``tissues``: uint8 ``(3, X, Y, Z)``, probability × 255 of CSF, GM, WM (order of :data:`TISSUES`);
    ``affine``: voxel → RAS mm; ``brain_min_mm`` / ``brain_max_mm``: the brain's bounding box in RAS mm;
    ``deep_wm_mm``: ``(N, 3)`` RAS mm points of deep supratentorial white matter (tumour seeds).
    """

    tissues: np.ndarray
    affine: np.ndarray
    brain_min_mm: np.ndarray
    brain_max_mm: np.ndarray
    deep_wm_mm: np.ndarray


def _template_folder() -> Path:
    """The folder of nilearn's packaged templates, found without importing nilearn (its import is slow)."""
    spec = importlib.util.find_spec(TEMPLATE_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    folder = Path(locations[0]) / "datasets" / "data" if locations else None
    if folder is None or not all((folder / name).is_file() for name in TEMPLATE_FILES.values()):
        raise BratsUNetError("Synthetic cases need the MNI brain template shipped with the Python package "
                             f"'{TEMPLATE_PACKAGE}'; install it with: pip install {TEMPLATE_PACKAGE}")
    return folder


@functools.lru_cache(maxsize=None)
def load_template(factor: int = 1) -> Template:
    """The template, block-averaged by an integer ``factor`` (voxel size ``factor`` mm) for small output grids.

    Sampling the 1 mm maps at several mm steps would alias the cortical ribbon into speckle; averaging blocks
    first gives the partial-volume look of a low-resolution scan. Cached per factor for the process.
    """
    if factor > 1:
        full = load_template(1)
        crop = [n - n % factor for n in full.tissues.shape[1:]]
        blocks = full.tissues[:, :crop[0], :crop[1], :crop[2]].reshape(
            3, crop[0] // factor, factor, crop[1] // factor, factor, crop[2] // factor, factor)
        tissues = blocks.mean(axis=(2, 4, 6)).round().astype(np.uint8)
        # A block's centre sits (factor - 1) / 2 fine voxels from its first voxel.
        to_fine = np.diag([factor, factor, factor, 1.0])
        to_fine[:3, 3] = (factor - 1) / 2
        return Template(tissues, full.affine @ to_fine, full.brain_min_mm, full.brain_max_mm, full.deep_wm_mm)

    folder = _template_folder()
    maps = {key: nib.load(folder / name) for key, name in TEMPLATE_FILES.items()}
    affine = maps["t1"].affine.astype(np.float64)
    t1, gm, wm = (np.asarray(maps[key].dataobj, dtype=np.int16) for key in ("t1", "gm", "wm"))
    brain = t1 > 0  # the template T1 is skull-stripped: its support is the brain mask
    csf = np.clip(255 * brain - gm - wm, 0, 255)
    tissues = np.stack([csf, gm * brain, wm * brain]).astype(np.uint8)

    voxels = np.argwhere(brain)
    corners = nib.affines.apply_affine(affine, np.stack([voxels.min(0), voxels.max(0)]))
    deep = np.argwhere(wm > DEEP_WM)[::7]  # every 7th voxel is plenty of seeds and keeps the array small
    deep_mm = nib.affines.apply_affine(affine, deep)
    deep_mm = deep_mm[deep_mm[:, 2] > SUPRATENTORIAL_Z_MM]
    return Template(tissues, affine, corners.min(0), corners.max(0), deep_mm)


@dataclass(frozen=True)
class Placement:
    """Where one case's brain sits in its output grid.

    ``voxel_to_template``: 4×4 output voxel index → template RAS mm (pose and orientation of the output);
    ``scale``: output voxels per template mm (the mean size factor, to size tumours and deformations).
    """

    voxel_to_template: np.ndarray
    scale: float

    def to_voxels(self, points_mm: np.ndarray) -> np.ndarray:
        """Template RAS mm points ``(N, 3)`` → output voxel coordinates ``(N, 3)`` (float)."""
        return nib.affines.apply_affine(np.linalg.inv(self.voxel_to_template), points_mm)


def place_brain(template: Template, shape: tuple[int, int, int], affine: np.ndarray,
                rng: np.random.Generator) -> Placement:
    """A random pose of the template brain, centred in the output grid ``shape`` whose voxel → RAS is ``affine``.

    The brain is scaled so that it fills about :data:`FILL` of the tightest axis, then scaled by 0.86..1 per
    axis, rotated by a few degrees (small tilts, larger in-plane turns) and shifted by up to 3 % of the grid.
    """
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    extent_mm = template.brain_max_mm - template.brain_min_mm
    # The output axis carrying each RAS direction, so the fit compares like with like.
    axis_of_ras = np.abs(affine[:3, :3]).argmax(axis=1)
    fov_mm = (np.asarray(shape) * spacing)[axis_of_ras]
    fit = float(np.min(FILL * fov_mm / extent_mm))
    size = fit * rng.uniform(0.86, 1.0) * rng.uniform(0.96, 1.04, size=3)
    turn = Rotation.from_euler("xyz", rng.uniform(-1, 1, size=3) * [4, 4, 8], degrees=True).as_matrix()
    shift = rng.uniform(-0.03, 0.03, size=3) * np.asarray(shape)

    centre_voxel = (np.asarray(shape) - 1) / 2 + shift
    centre_template = (template.brain_min_mm + template.brain_max_mm) / 2
    # template mm = centre_template + (turn · size)⁻¹ · (world offset of the voxel from the centre voxel)
    linear = np.linalg.inv(turn @ np.diag(size)) @ affine[:3, :3]
    voxel_to_template = np.eye(4)
    voxel_to_template[:3, :3] = linear
    voxel_to_template[:3, 3] = centre_template - linear @ centre_voxel
    return Placement(voxel_to_template, float(np.mean(size) / np.mean(spacing)))


def brain_box(template: Template, placement: Placement, shape: tuple[int, int, int],
              margin: int) -> tuple[slice, slice, slice]:
    """The part of the output grid that can hold brain: the posed template bounding box plus ``margin`` voxels."""
    lo, hi = template.brain_min_mm, template.brain_max_mm
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    voxels = placement.to_voxels(corners)
    start = np.maximum(np.floor(voxels.min(0)) - margin, 0).astype(int)
    stop = np.minimum(np.ceil(voxels.max(0)) + margin + 1, shape).astype(int)
    return tuple(slice(a, b) for a, b in zip(start, stop))


def smooth_noise(shape: tuple[int, ...], correlation: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field of ``shape`` (float32, mean 0, std about 1) varying over ``correlation`` voxels.

    White noise on a grid ``correlation`` voxels coarse, interpolated trilinearly: the cost of a Gaussian
    filter at full resolution is avoided, and the few-voxel scales asked for here hide the linear pieces.
    """
    coarse_shape = [int(np.ceil(n / max(correlation, 1.0))) + 2 for n in shape]
    coarse = rng.standard_normal(coarse_shape).astype(np.float32)
    zoom = [(n - 1) / (c - 1) for n, c in zip(shape, coarse_shape)]
    field = ndimage.zoom(coarse, zoom, order=1, grid_mode=False)[tuple(slice(0, n) for n in shape)]
    # Interpolation between independent samples loses variance (to about 4/9 in 3-D at the grid midpoints).
    return field * np.float32(1.5)


def smooth_displacement(box_shape: tuple[int, int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random displacement field, float32 ``(3, *box_shape)`` in voxels, up to about 3 mm × scale.

    Each component is a sum of two separable products of cosines with random wavelengths (60..160 mm × scale)
    and phases: a per-case warp of the anatomy (gyri, ventricles) at the cost of a few array products.
    """
    field = np.zeros((3, *box_shape), dtype=np.float32)
    for component in field:
        for _ in range(2):
            amplitude = rng.uniform(0.7, 1.5) * scale
            factors = [np.cos(2 * np.pi * np.arange(n) / (rng.uniform(60, 160) * scale) + rng.uniform(0, 2 * np.pi))
                       .astype(np.float32) for n in box_shape]
            component += amplitude * factors[0][:, None, None] * factors[1][None, :, None] * factors[2][None, None, :]
    return field


def sample_tissues(template: Template, placement: Placement, coords: np.ndarray) -> np.ndarray:
    """Tissue probabilities float32 ``(3, ...)`` (CSF, GM, WM in 0..1) at output voxel coordinates ``coords``.

    ``coords``: float32 ``(3, ...)`` output voxel coordinates after any deformation; trilinear interpolation,
    zero outside the template.
    """
    to_template_voxel = np.linalg.inv(template.affine) @ placement.voxel_to_template
    flat = coords.reshape(3, -1)
    points = (to_template_voxel[:3, :3].astype(np.float32) @ flat
              + to_template_voxel[:3, 3:].astype(np.float32))
    tissues = np.empty((3, flat.shape[1]), dtype=np.float32)
    for out, tissue in zip(tissues, template.tissues):
        ndimage.map_coordinates(tissue, points, output=out, order=1, mode="constant", cval=0.0, prefilter=False)
    tissues *= np.float32(1 / 255)
    return tissues.reshape(3, *coords.shape[1:])
