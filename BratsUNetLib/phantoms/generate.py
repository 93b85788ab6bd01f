"""Synthetic BraTS-style cases: four MRI contrasts and a tumour label map, reproducible from a seed.

A case has the geometry of the BraTS 2020 files: 240×240×155 voxels of 1 mm stored in LPS voxel order (affine
``diag(-1, -1, 1)`` with the origin BraTS uses), or the same anatomy stored left-handed (``diag(-1, 1, 1)``)
as some clinical files are. Images are int16 in a realistic range (brain 0..~2000, background exactly 0, as in
skull-stripped BraTS data); the label map is uint8 with 0, 1 necrotic core, 2 edema, 4 enhancing tumour.

Pipeline: real template anatomy in a random pose (:mod:`BratsUNetLib.phantoms.anatomy`) → tumours with mass
effect (:mod:`BratsUNetLib.phantoms.tumour`) → the tissue and glioma contrasts of each modality
(:data:`TISSUE_CONTRAST`, :data:`TUMOUR_CONTRAST`) → smooth bias field, Rician noise, per-case intensity scale.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.data.images import write_image
from BratsUNetLib.hardware.memory import check_allocation
from BratsUNetLib.modalities import MODALITIES
from BratsUNetLib.phantoms.anatomy import (brain_box, load_template, place_brain, sample_tissues, smooth_displacement,
                                         smooth_noise)
from BratsUNetLib.phantoms.tumour import draw_lesions, plan_lesions, push_tissue_away

BRATS_SHAPE = (240, 240, 155)
MIN_SIZE = 16  # smallest grid edge that still holds a recognisable brain and tumour
CASE_ID_FORMAT = "BraTS20_Phantom_{:03d}"
# Peak memory of generate_case per voxel of the grid: the brain box's coordinates, tissue maps, lesion weights
# and noise are float32 arrays of several channels (measured with tracemalloc: about 70 bytes).
BYTES_PER_VOXEL = 80

# Mean intensity of CSF, grey matter and white matter relative to white matter, per modality
# (T1: WM > GM > CSF; T2: CSF > GM > WM; FLAIR: GM > WM with dark CSF; T1ce like T1).
TISSUE_CONTRAST = {
    "flair": (0.30, 1.25, 1.0),
    "t1": (0.30, 0.68, 1.0),
    "t1ce": (0.32, 0.72, 1.0),
    "t2": (2.6, 1.35, 1.0),
}
# Glioma compartments per modality, in the order of phantom_tumour.COMPARTMENTS: edema multiplies the tissue it
# infiltrates; enhancing rim, necrosis and non-enhancing tumour replace it (relative to white matter).
# FLAIR/T2 bright edema, T1ce bright rim, dark necrosis in T1 and T1ce that is bright in T2.
TUMOUR_CONTRAST = {
    "flair": (1.65, 1.45, 0.95, 1.7),
    "t1": (0.85, 0.80, 0.40, 0.62),
    "t1ce": (0.85, 2.10, 0.38, 0.66),
    "t2": (1.9, 1.55, 2.4, 2.0),
}
# White-matter intensity range per modality: the per-case scale of the stored values.
WHITE_MATTER_LEVEL = {"flair": (200, 500), "t1": (300, 700), "t1ce": (300, 800), "t2": (250, 650)}


@dataclass
class PhantomCase:
    """One synthetic case: ``images`` maps each of :data:`MODALITIES` to an int16 ``(X, Y, Z)`` array, ``label`` is
    the uint8 ``(X, Y, Z)`` BraTS 2020 label map and ``affine`` the 4×4 voxel → RAS mm matrix shared by all."""

    images: dict[str, np.ndarray]
    label: np.ndarray
    affine: np.ndarray


def brats_affine(shape: Sequence[int], left_handed: bool = False) -> np.ndarray:
    """The voxel → RAS affine of BraTS 2020 files for a grid ``shape`` (1 mm voxels).

    BraTS stores LPS voxel order: ``diag(-1, -1, 1)`` with the origin at ``(0, Y - 1, 0)`` (``239`` for the
    240-voxel grid). ``left_handed`` stores the same world grid with the Y axis reversed: ``diag(-1, 1, 1)``.
    """
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[1, 3] = shape[1] - 1
    if left_handed:
        affine[1, 1], affine[1, 3] = 1.0, 0.0
    return affine


def check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """``shape`` as three ints, or a BratsUNetError when it is not three edges of at least :data:`MIN_SIZE`."""
    values = tuple(shape)
    if len(values) != 3 or not all(isinstance(n, (int, np.integer)) and n >= MIN_SIZE for n in values):
        raise BratsUNetError(f"Phantom shape {values} is not usable: give three voxel counts of at least {MIN_SIZE}, "
                             "e.g. 240 240 155.")
    return tuple(int(n) for n in values)


def check_memory(shape: Sequence[int]) -> None:
    """Refuse (one line) a grid whose phantom would not fit in the memory available now, before allocating it."""
    check_allocation(math.prod(int(n) for n in shape) * BYTES_PER_VOXEL,
                     f"A phantom of {'×'.join(str(int(n)) for n in shape)} voxels",
                     "give a smaller --shape, e.g. 240 240 155 (as BraTS) or 64 64 64")


def case_paths(folder: str | os.PathLike, case_id: str) -> dict[str, Path]:
    """Where :func:`write_case` writes case ``case_id``: modality (and ``"seg"``) -> path."""
    case_dir = Path(folder) / case_id
    return {name: case_dir / f"{case_id}_{name}.nii.gz" for name in (*MODALITIES, "seg")}


def generate_case(shape: Sequence[int] = BRATS_SHAPE, seed: int | Sequence[int] = 0,
                  left_handed: bool = False) -> PhantomCase:
    """A synthetic BraTS case of ``shape`` voxels (1 mm), entirely determined by ``seed``.

    ``seed`` is anything :func:`numpy.random.default_rng` accepts (an int, or a sequence such as
    ``(cohort_seed, case_index)``). ``left_handed`` stores the same anatomy at the same world points with the
    left-handed affine of :func:`brats_affine`.
    """
    shape = check_shape(shape)
    check_memory(shape)
    rng = np.random.default_rng(seed)
    affine = brats_affine(shape)
    placement = place_brain(load_template(1), shape, affine, rng)
    # Sample a template blurred to about the output's voxel size (see load_template).
    template = load_template(max(1, int(1 / placement.scale)))
    lesions = plan_lesions(template, placement, rng)
    # Room for the smooth displacement (up to 3 mm × scale) and for brain pushed outwards by a tumour near it.
    margin = int(np.ceil(4 * placement.scale + 0.4 * max(lesion.push for lesion in lesions))) + 1
    box = brain_box(template, placement, shape, margin)
    origin = np.array([s.start for s in box])
    box_shape = tuple(s.stop - s.start for s in box)

    coords = np.stack(np.meshgrid(*(np.arange(s.start, s.stop, dtype=np.float32) for s in box), indexing="ij"))
    push_tissue_away(coords, lesions)
    coords += smooth_displacement(box_shape, placement.scale, rng)
    tissues = sample_tissues(template, placement, coords)
    del coords
    brain = tissues.sum(axis=0) > 0.5
    label_box, weights = draw_lesions(lesions, tissues, brain, origin, rng)

    label = np.zeros(shape, dtype=np.uint8)
    label[box] = label_box
    texture = smooth_noise(box_shape, 2.0 * max(placement.scale, 0.5), rng)
    images = {}
    for modality in MODALITIES:
        image = np.zeros(shape, dtype=np.int16)
        image[box] = _render(modality, tissues, weights, brain, texture, rng)
        images[modality] = image
    case = PhantomCase(images, label, affine)
    return _as_left_handed(case) if left_handed else case


def _render(modality: str, tissues: np.ndarray, weights: np.ndarray, brain: np.ndarray, texture: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    """One modality over the brain box as int16: tissue mixture, glioma contrasts, then acquisition effects."""
    csf, gm, wm = (np.float32(v) * np.float32(rng.uniform(0.93, 1.07)) for v in TISSUE_CONTRAST[modality])
    image = csf * tissues[0] + gm * tissues[1] + wm * tissues[2]
    image *= 1 + np.float32(0.04) * texture
    if modality == "t1ce":
        # Contrast-filled vessels (sulcal veins, choroid plexus): sparse bright spots in CSF.
        image *= 1 + np.float32(1.5) * ((texture > 2.2) & (tissues[0] > 0.3))

    edema, *replacing = TUMOUR_CONTRAST[modality]
    image *= 1 + weights[0] * np.float32(edema * rng.uniform(0.9, 1.1) - 1)
    solid = np.minimum(weights[1:].sum(axis=0), 1)
    tumour = sum(w * np.float32(level * rng.uniform(0.9, 1.1)) for w, level in zip(weights[1:], replacing))
    # Tumour tissue is more heterogeneous than healthy tissue: the same texture, three times as strong.
    image = image * (1 - solid) + tumour * (1 + np.float32(0.12) * texture)

    image *= _bias_field(brain.shape, rng)
    sigma = np.float32(rng.uniform(0.015, 0.04))
    noise = rng.standard_normal((2, *brain.shape), dtype=np.float32) * sigma
    image = np.sqrt((image + noise[0]) ** 2 + noise[1] ** 2)  # Rician: magnitude of a complex signal with noise
    image *= np.float32(rng.uniform(*WHITE_MATTER_LEVEL[modality])) * brain
    return np.clip(np.rint(image), 0, np.iinfo(np.int16).max).astype(np.int16)


def _bias_field(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A smooth multiplicative bias field (float32, about 0.75..1.3 over the box), as coil sensitivity varies
    slowly over the head: exp of a random quadratic along each axis of the box (coordinates in -1..1).

    A sum of per-axis terms makes the field a product of three 1-D factors, computed with one broadcast."""
    field = np.ones((1, 1, 1), dtype=np.float32)
    for axis, n in enumerate(shape):
        t = np.linspace(-1, 1, n)
        factor = np.exp(rng.uniform(-0.1, 0.1) * t + rng.uniform(-0.08, 0.08) * t * t).astype(np.float32)
        field = field * factor.reshape([-1 if a == axis else 1 for a in range(3)])
    return field


def _as_left_handed(case: PhantomCase) -> PhantomCase:
    """The same case stored with the Y axis reversed: every voxel keeps its world position."""
    flip = lambda array: np.ascontiguousarray(array[:, ::-1, :])  # noqa: E731
    return PhantomCase({name: flip(image) for name, image in case.images.items()}, flip(case.label),
                       brats_affine(case.label.shape, left_handed=True))


def write_case(case: PhantomCase, folder: str | os.PathLike, case_id: str) -> dict[str, Path]:
    """Write ``case`` in the BraTS layout ``folder/case_id/case_id_<modality>.nii.gz`` plus ``_seg`` (atomic).

    Returns the written paths keyed by modality and ``"seg"``.
    """
    paths = case_paths(folder, case_id)
    for name in MODALITIES:
        write_image(paths[name], case.images[name], case.affine, np.int16)
    write_image(paths["seg"], case.label, case.affine, np.uint8)
    return paths


def generate_cohort(folder: str | os.PathLike, n_cases: int, shape: Sequence[int] = BRATS_SHAPE, seed: int = 0,
                    left_handed: bool = False, progress=None, overwrite: bool = False) -> list[Path]:
    """Write ``n_cases`` cases ``BraTS20_Phantom_001``, ... into ``folder`` and return their folders.

    Case ``i`` (from 1) is generated from the seed ``(seed, i)``, so it is the same whatever ``n_cases`` is.
    Before anything is generated: the memory one case needs is checked, and, unless ``overwrite``, none of the
    files may exist already (the error lists them). ``progress``: an optional
    :class:`BratsUNetLib.events.ProgressReporter` advanced once per case.
    """
    if isinstance(n_cases, bool) or not isinstance(n_cases, (int, np.integer)) or n_cases < 1:
        raise BratsUNetError(f"The number of phantom cases must be at least 1, got {n_cases}.")
    if seed < 0:
        raise BratsUNetError(f"The phantom seed must be 0 or more, got {seed}.")
    shape = check_shape(shape)
    check_memory(shape)
    case_ids = [CASE_ID_FORMAT.format(index) for index in range(1, n_cases + 1)]
    if not overwrite:
        existing = [path for case_id in case_ids for path in case_paths(folder, case_id).values()
                    if os.path.lexists(path)]
        if existing:
            shown = ", ".join(f"'{path}'" for path in existing[:3])
            more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
            raise BratsUNetError(f"{len(existing)} phantom file(s) exist already: {shown}{more}; pass --overwrite "
                                 f"to replace them, or choose another --output.")
    task = "phantoms"
    if progress is not None:
        progress.start(task, n_cases)
    case_dirs = []
    for index, case_id in enumerate(case_ids, start=1):
        paths = write_case(generate_case(shape, (seed, index), left_handed), folder, case_id)
        case_dirs.append(paths["seg"].parent)
        if progress is not None:
            progress.advance(task, index, n_cases, case=case_id)
    return case_dirs
