"""Image files in and out, and the geometry that connects them: the one place in the library that uses affines.

Everything else receives arrays plus 4×4 voxel-to-world (RAS, mm) affines from here and hands them back here.

Conventions:

- Arrays are in the file's own voxel order ``(X, Y, Z)`` (nibabel's ``img.dataobj`` order, i.e. ``(I, J, K)``);
  multi-channel arrays are channel-first ``(C, X, Y, Z)`` in memory and written channel-last ``(X, Y, Z, C)``
  as the original 3DUnetCNN wrote its predictions.
- The affine maps a voxel index ``(i, j, k, 1)`` to RAS millimetres. It is nibabel's ``img.affine``: the sform
  when ``sform_code > 0``, else the qform. 3D Slicer (through ITK) uses the sform only when ``sform_code == 1``
  and the qform otherwise, so a file whose sform (code 2..4) and qform disagree lands in different places in
  Slicer and here; a warning is logged for such files. Files written here carry identical qform and sform
  with code 1 (scanner), which both read the same way.
- A NIfTI file whose qform and sform codes are both 0 has no trusted orientation. The rule: it is read with the
  affine nibabel falls back to (voxel sizes from ``pixdim``, no rotation, the volume centred at the origin, the
  first axis pointing left as in ANALYZE), and one warning line names the file and says so. It is not refused,
  because its voxels are still usable and all channels of such a case get the same fallback; but 3D Slicer
  (ITK) falls back differently, so results may appear elsewhere there.
- Two images are compared only through their affines, never by assuming a transpose: a left-handed file
  (``det < 0``, e.g. ``diag(-x, y, z)``) and a right-handed one can store the same grid in different voxel
  orders (a left-handed file is stored K-reversed by Slicer: same voxels at the same RAS points).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError
from scipy import ndimage

from BratsUNetLib.errors import ImageError
from BratsUNetLib.fileio import atomic_path
from BratsUNetLib.inputfiles import require_regular_file
from BratsUNetLib.hardware.memory import check_allocation

log = logging.getLogger(__name__)

# Two grids count as the same, or as an exact axis permutation/flip of each other, when every reference voxel
# centre maps to within this many voxels of a moving voxel centre (NIfTI stores affines in float32).
GRID_TOLERANCE_VOXELS = 1e-3

# Cosine of the angle between two voxel axes above which a grid counts as sheared (float32 affines round
# to about 1e-7; real scanner grids are perpendicular).
SHEAR_TOLERANCE = 1e-4

# Label files are integer-valued; tools that store them as floats may add rounding noise below this.
LABEL_VALUE_TOLERANCE = 1e-3

# Errors nibabel, gzip and numpy raise on files that are not images, are damaged or are truncated (a damaged
# header's offsets and sizes can overflow numpy's memmap arithmetic).
_READ_ERRORS = (ImageFileError, HeaderDataError, OSError, EOFError, ValueError, OverflowError, zlib.error,
                struct.error)


class _HeaderReports(logging.Filter):
    """Holds back what nibabel says about a damaged header while this thread reads a file (see :func:`read_image`).

    nibabel repairs some header fields on load and prints each repair on its own line to stderr (its
    ``nibabel.global`` logger has its own handler), which would add lines before the one error line of a file
    that then fails. Records are kept per thread (channels are read in parallel); other threads and other
    callers of nibabel see them as before.
    """

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    @contextlib.contextmanager
    def collect(self) -> Iterator[list[str]]:
        self._local.messages = messages = []
        try:
            yield messages
        finally:
            self._local.messages = None

    def filter(self, record: logging.LogRecord) -> bool:
        messages = getattr(self._local, "messages", None)
        if messages is None:
            return True
        messages.append(record.getMessage())
        return False


_HEADER_REPORTS = _HeaderReports()
logging.getLogger("nibabel.global").addFilter(_HEADER_REPORTS)


@dataclass
class Image:
    """One image volume.

    ``array``: float32 ``(X, Y, Z)`` in the file's voxel order (uint8 for label images from
    :func:`read_label_image`); ``affine``: float64 4×4 voxel index → RAS mm; ``path``: the file it came from.
    """

    array: np.ndarray
    affine: np.ndarray
    path: Path

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along X, Y, Z."""
        return voxel_spacing(self.affine)


def axis_codes(affine: np.ndarray) -> str:
    """Where the voxel axes point, as three letters (nibabel's convention): ``"LPS"`` for BraTS 2020 files."""
    return "".join(nib.aff2axcodes(np.asarray(affine, dtype=np.float64)))


def read_axis_codes(path: str | os.PathLike) -> str:
    """:func:`axis_codes` of an image file, from its header alone (no voxels are read)."""
    path = require_regular_file(path, "Image file", "give a NIfTI file (.nii or .nii.gz)", error=ImageError)
    try:
        with _HEADER_REPORTS.collect():  # the full read reports a damaged header
            return axis_codes(nib.load(str(path)).affine)
    except Exception as exc:  # nibabel raises many types for unreadable headers; the full read reports details
        raise ImageError(f"Cannot read the header of '{path}' ({exc}); check that it is a NIfTI image.") from None


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along each array axis: the lengths of the affine's first three columns."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0))


def _check_affine(affine: np.ndarray, name: str) -> np.ndarray:
    """Return ``affine`` as float64 4×4, or raise ImageError when it cannot map voxels to distinct points."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise ImageError(f"'{name}' has an invalid voxel-to-world matrix (not a finite 4x4 affine); "
                         "fix the file's header (sform/qform).")
    singular_values = np.linalg.svd(affine[:3, :3], compute_uv=False)
    # A zero voxel size or collapsed axes make the geometry meaningless (and the matrix non-invertible).
    if singular_values[-1] <= 1e-6 * max(singular_values[0], 1e-12):
        raise ImageError(f"'{name}' has a degenerate voxel-to-world matrix (zero voxel size or collapsed axes: "
                         f"{np.round(affine[:3, :3], 4).tolist()}); fix the voxel sizes / orientation in its header.")
    return affine


def read_image(path: str | os.PathLike) -> Image:
    """Read a 3-D image (NIfTI or another format nibabel reads) as float32 ``(X, Y, Z)`` plus its RAS affine.

    A 4-D image whose trailing dimensions are 1 is squeezed to 3-D. Raises :class:`ImageError` with one line
    naming the file when it is missing or not a regular file (a folder, FIFO or device: refused before it is
    opened, so nothing blocks), not an image, damaged or truncated, not 3-D, empty, not scalar (RGB, complex or
    structured voxels), larger than the memory available (checked from the header, before reading), contains
    NaN or infinite values, or has a degenerate affine. A file without orientation (qform and sform codes 0) is
    read with a warning (see the module docstring), and so is a file whose header nibabel had to repair (one
    line listing the repairs, instead of nibabel's line per repair; nothing when the file fails anyway).
    """
    # A FIFO would block the read and /dev/zero never end it: only regular files are opened.
    path = require_regular_file(path, "Image file", "give a NIfTI file (.nii or .nii.gz)", error=ImageError)
    with _HEADER_REPORTS.collect() as repairs:
        image = _read_checked(path)
    if repairs:  # the file was usable after all: say once that its header needed repairs
        log.warning("'%s' has a damaged header that nibabel repaired (%s); check the file.", path,
                    "; ".join(dict.fromkeys(repairs)))
    return image


def _read_checked(path: Path) -> Image:
    """:func:`read_image` after the path check (nibabel's reports about the header held back)."""
    try:
        image = nib.load(path)
        shape = tuple(int(n) for n in image.shape)
        dtype = np.dtype(image.get_data_dtype())
    # nibabel raises many kinds of error for garbled headers (e.g. an unknown datatype code is a KeyError).
    except (*_READ_ERRORS, KeyError, IndexError, TypeError, MemoryError) as exc:
        raise ImageError(f"'{path}' is not a readable image ({_reason(exc, path)}); give a NIfTI file "
                         "(.nii or .nii.gz).") from None
    if not hasattr(image, "affine") or not hasattr(image, "get_fdata"):
        raise ImageError(f"'{path}' is not a volume image; give a NIfTI file (.nii or .nii.gz).")
    _check_scalar(dtype, path)

    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 3:
        raise ImageError(f"'{path}' is a {len(shape)}-D image of shape {shape}; give one 3-D volume per file "
                         "(split multi-volume files, e.g. with fslsplit).")
    if len(shape) < 3:
        raise ImageError(f"'{path}' is a {len(shape)}-D image of shape {shape}; a 3-D volume is needed.")
    if 0 in shape or min(shape) < 0:
        raise ImageError(f"'{path}' is empty (shape {shape}); give an image that contains voxels.")
    # The header alone says how much reading takes (the stored values, then their float32 copy): refuse a header
    # that claims more than the memory before a byte of voxels is read.
    check_allocation(math.prod(shape) * (dtype.itemsize + 4), f"Reading '{path}' ({'x'.join(map(str, shape))} "
                     f"voxels of {dtype.name})", "check that this is the right file (its header may be damaged), "
                     "or use a machine with more memory", error=ImageError)
    _check_orientation_codes(image, path)

    try:
        # Scaling that overflows float32 gives inf, reported below in one line; numpy's warning would add two.
        with np.errstate(all="ignore"):
            array = image.get_fdata(dtype=np.float32, caching="unchanged").reshape(shape)
    except MemoryError:
        raise ImageError(f"'{path}' is too big to read into the memory available; use a machine with more "
                         "memory.") from None
    except _READ_ERRORS as exc:
        raise ImageError(f"'{path}' could not be read completely ({_reason(exc, path)}); the file is probably "
                         "truncated or damaged: copy or export it again.") from None
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise ImageError(f"'{path}' contains {bad} NaN or infinite voxel values; replace them (e.g. with 0) "
                         "and save the file again.")
    affine = _check_affine(image.affine, str(path))
    _warn_if_slicer_disagrees(image, path)
    return Image(array=array, affine=affine, path=path)


def _check_scalar(dtype: np.dtype, path: Path) -> None:
    """Refuse voxel types that are not one number per voxel: RGB/RGBA colour, complex values, other records."""
    if dtype.names:
        kind = "an RGB colour image" if dtype.names[:3] == ("R", "G", "B") else "an image of structured voxels"
        raise ImageError(f"'{path}' is {kind} (voxels of {', '.join(dtype.names)}), not a scalar image; give one "
                         "grey-value MRI volume per file (convert it to one channel, e.g. float32).")
    if dtype.kind == "c":
        raise ImageError(f"'{path}' is a complex-valued image ({dtype.name}), not a scalar image; give the "
                         "magnitude image (one real value per voxel).")
    if dtype.kind not in "biuf":
        raise ImageError(f"'{path}' stores voxels of an unsupported type ({dtype}); give a scalar image "
                         "(integer or floating-point voxels).")


def _check_orientation_codes(image: nib.spatialimages.SpatialImage, path: Path) -> None:
    """Warn (one log line) when a NIfTI file has neither an sform nor a qform (both codes 0; see module doc)."""
    header = getattr(image, "header", None)
    if not isinstance(header, nib.Nifti1Header):  # NIfTI-2 headers derive from it
        return
    if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        spacing = "x".join(f"{float(v):g}" for v in header["pixdim"][1:4])
        log.warning("'%s' has no orientation (qform and sform codes are 0); it is used as nibabel reads it: "
                    "voxel size %s mm from pixdim, no rotation, centred at 0, so results may appear elsewhere in "
                    "3D Slicer. Set the orientation in its header (e.g. copy the qform from another channel).",
                    path, spacing)


def _reason(exc: BaseException, path: Path) -> str:
    """The first line of an exception's message, without the file path nibabel repeats in it."""
    text = str(exc)
    for quoted in (f'File "{path}"', f"File {path}", f'"{path}"', str(path)):
        text = text.replace(quoted, "the file")
    lines = text.strip().splitlines()
    return (lines[0] if lines else type(exc).__name__).rstrip(". -")


def _warn_if_slicer_disagrees(image: nib.spatialimages.SpatialImage, path: Path) -> None:
    """Log a warning when Slicer would place this NIfTI file elsewhere than nibabel does (see module doc)."""
    header = getattr(image, "header", None)
    if not isinstance(header, nib.Nifti1Header):
        return
    sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
    if sform_code in (0, 1) or qform_code == 0:
        return
    if not np.allclose(header.get_sform(), header.get_qform(), atol=1e-3):
        log.warning("'%s': sform (code %d) and qform differ; BratsUNet uses the sform, 3D Slicer the qform, so "
                    "results may appear shifted in Slicer. Rewrite the file with one consistent orientation.",
                    path, sform_code)


def read_label_image(path: str | os.PathLike) -> Image:
    """Read a label map on its own grid: like :func:`read_image`, with a uint8 array.

    Raises :class:`ImageError` when values are not whole numbers in 0..255 (e.g. a probability map or an
    intensity image given as a label).
    """
    image = read_image(path)
    values = image.array
    rounded = np.rint(values)
    off = np.abs(values - rounded) > LABEL_VALUE_TOLERANCE
    if off.any():
        examples = np.unique(values[off])[:3]
        raise ImageError(f"'{image.path}' is not a label map: {int(off.sum())} voxels have non-integer values "
                         f"(e.g. {', '.join(f'{v:g}' for v in examples)}); give a segmentation with integer labels.")
    if rounded.min() < 0 or rounded.max() > 255:
        raise ImageError(f"'{image.path}' has label values outside 0..255 (min {rounded.min():g}, max "
                         f"{rounded.max():g}); give a segmentation with labels such as 0, 1, 2, 4.")
    return Image(array=rounded.astype(np.uint8), affine=image.affine, path=image.path)


def resample_to_reference(array: np.ndarray, affine: np.ndarray, reference_shape: Sequence[int],
                          reference_affine: np.ndarray, order: int = 1, name: str = "image") -> np.ndarray:
    """Resample ``array`` (3-D, on the grid ``affine``) onto the reference grid, through world coordinates.

    ``order`` 1 (trilinear) for images, 0 (nearest neighbour) for labels. Reference voxels outside the moving
    image get 0. The result has ``reference_shape`` and ``array``'s dtype.

    - Identical grids: ``array`` itself is returned (no copy).
    - Grids that differ only by an axis permutation, flips and a whole-voxel shift (e.g. the same grid stored
      left-handed and right-handed): exact rearrangement by transposes, flips and slicing, no interpolation.
    - Otherwise: ``scipy.ndimage.affine_transform`` with the voxel-to-voxel matrix ``inv(affine) @ reference_affine``.

    Raises :class:`ImageError` (naming ``name``) when the two fields of view do not overlap at all.
    """
    reference_shape = tuple(int(n) for n in reference_shape)
    affine = _check_affine(affine, name)
    reference_affine = _check_affine(reference_affine, "reference image")
    # reference voxel (homogeneous) -> moving voxel
    transform = np.linalg.inv(affine) @ reference_affine
    mapping = _axis_mapping(transform, reference_shape)
    if mapping is not None:
        return _rearrange(array, *mapping, reference_shape, name)
    if not _fields_overlap(transform, array.shape, reference_shape):
        raise _no_overlap(name)
    matrix, offset = transform[:3, :3], transform[:3, 3]
    # Within the moving image's field of view (half a voxel around its voxel centres) values are interpolated, the
    # edge values extending over the half voxel beyond the outermost centres; outside it they are 0. (scipy's
    # "constant" mode zeroes every point beyond the outermost centres, so a reference voxel on a shared edge, e.g.
    # 1 mm and 2 mm scans of one field of view, lost its value whenever rounding put it 1e-16 outside.)
    resampled = ndimage.affine_transform(array, matrix, offset=offset, output_shape=reference_shape, order=order,
                                         mode="nearest")
    covered = ndimage.affine_transform(np.ones(array.shape, dtype=np.uint8), matrix, offset=offset,
                                       output_shape=reference_shape, order=0, mode="grid-constant", cval=0)
    resampled[covered == 0] = 0
    return resampled


def _axis_mapping(transform: np.ndarray, reference_shape: tuple[int, ...]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(axes, signs, shifts)`` when ``transform`` is a signed axis permutation plus a whole-voxel shift.

    Reference index ``r`` maps to moving index ``m[axes[i]] = signs[i] * r[i] + shifts[axes[i]]``. ``None``
    when any reference voxel centre would land more than ``GRID_TOLERANCE_VOXELS`` from that position.
    """
    linear = transform[:3, :3]
    rounded = np.rint(linear)
    if not (np.abs(rounded).sum(axis=0) == 1).all() or not (np.abs(rounded).sum(axis=1) == 1).all():
        return None
    shifts = np.rint(transform[:3, 3])
    # The linear error grows with the index, so the far corner of the reference grid bounds it.
    extent = np.maximum(np.asarray(reference_shape, dtype=np.float64) - 1, 0)
    deviation = np.abs(linear - rounded) @ extent + np.abs(transform[:3, 3] - shifts)
    if deviation.max() > GRID_TOLERANCE_VOXELS:
        return None
    axes = np.argmax(np.abs(rounded), axis=0)
    signs = rounded[axes, np.arange(3)]
    return axes, signs, shifts


def _rearrange(array: np.ndarray, axes: np.ndarray, signs: np.ndarray, shifts: np.ndarray,
               reference_shape: tuple[int, ...], name: str) -> np.ndarray:
    """Apply an exact axis mapping from :func:`_axis_mapping` with transposes, flips and slicing."""
    if (axes == np.arange(3)).all() and (signs > 0).all() and (shifts == 0).all() \
            and array.shape == reference_shape:
        return array
    moved = np.transpose(array, axes)
    source, target = [], []
    for i in range(3):
        size = array.shape[axes[i]]
        if signs[i] < 0:
            # m = shift - r, so in the flipped array r sits at index (size - 1 - shift) + r.
            moved = np.flip(moved, axis=i)
            offset = size - 1 - int(shifts[axes[i]])
        else:
            offset = int(shifts[axes[i]])
        start, stop = max(0, -offset), min(reference_shape[i], size - offset)
        if start >= stop:
            raise _no_overlap(name)
        target.append(slice(start, stop))
        source.append(slice(start + offset, stop + offset))
    if moved.shape == reference_shape and all(s.start == 0 and s.stop == n for s, n in zip(target, reference_shape)):
        return np.ascontiguousarray(moved)
    result = np.zeros(reference_shape, dtype=array.dtype)
    result[tuple(target)] = moved[tuple(source)]
    return result


def _fields_overlap(transform: np.ndarray, moving_shape: Sequence[int], reference_shape: Sequence[int]) -> bool:
    """Whether any reference voxel centre falls inside a voxel of the moving image.

    Checked one reference slice at a time (a few MB of coordinates) and stopping at the first hit, which for
    overlapping images is almost always the first slice tried.
    """
    upper = np.asarray(moving_shape, dtype=np.float64) - 0.5
    j, k = np.meshgrid(np.arange(reference_shape[1]), np.arange(reference_shape[2]), indexing="ij")
    plane = transform[:3, 1:3] @ np.stack([j.ravel(), k.ravel()]) + transform[:3, 3:4]
    for i in range(reference_shape[0]):
        points = plane + transform[:3, 0:1] * i
        if ((points >= -0.5) & (points <= upper[:, None])).all(axis=0).any():
            return True
    return False


def _no_overlap(name: str) -> ImageError:
    return ImageError(f"'{name}' and the reference image have fields of view that do not overlap (their "
                      "affines place them in different parts of space); check that the files belong to the same "
                      "case and that their headers are correct.")


def read_case(paths: Sequence[str | os.PathLike]) -> tuple[np.ndarray, np.ndarray]:
    """Read the channels of one case as ``(image (C, X, Y, Z) float32, reference affine 4×4)``.

    The first path is the reference: every other channel is resampled (trilinear) onto its grid when its
    geometry differs, so all channels share the first one's voxel order, shape and affine.

    Raises :class:`ImageError` for a file whose voxels all have one value (an empty export or the wrong file:
    the network would silently segment nothing) and for a sheared reference grid (results are written on it,
    and 3D Slicer / ITK cannot represent shear; the other channels are resampled, so they may be sheared).
    """
    if not paths:
        raise ImageError("No image files were given for the case; give one file per channel (FLAIR, T1, T1ce, T2).")
    # One thread per channel (up to the number of cores): gzip inflation and numpy's conversions release the GIL,
    # so the files of a case decode in parallel.
    with ThreadPoolExecutor(max_workers=min(len(paths), available_cores()), thread_name_prefix="read-case") as pool:
        futures = [pool.submit(_read_channel, path) for path in paths]
        images = [future.result() for future in futures]  # the first channel that fails, in order, is reported
    reference = images[0]
    if _is_sheared(reference.affine):
        raise ImageError(f"'{reference.path}' has a sheared voxel grid (its axes are not perpendicular), which 3D "
                         "Slicer and ITK cannot represent; resample it onto a regular grid and segment that.")
    channels = [reference.array]
    for channel in images[1:]:
        channels.append(resample_to_reference(channel.array, channel.affine, reference.shape, reference.affine,
                                              order=1, name=str(channel.path)))
    return np.stack(channels).astype(np.float32, copy=False), reference.affine


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS tells it, else all of them)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _read_channel(path: str | os.PathLike) -> Image:
    """:func:`read_image`, refusing a file whose voxels all have the same value (no image in it)."""
    image = read_image(path)
    if image.array.min() == image.array.max():
        raise ImageError(f"'{image.path}' holds no image: every voxel is {float(image.array.flat[0]):g}; give the "
                         "image that holds the scan for this channel.")
    return image


def _is_sheared(affine: np.ndarray) -> bool:
    """Whether the voxel axes of ``affine`` are not perpendicular (beyond NIfTI's float32 rounding)."""
    axes = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return bool(np.abs(axes.T @ axes - np.eye(3)).max() > SHEAR_TOLERANCE)


def read_label(path: str | os.PathLike, reference_shape: Sequence[int], reference_affine: np.ndarray) -> np.ndarray:
    """Read a label map onto the reference grid (nearest neighbour) as uint8 ``reference_shape``."""
    label = read_label_image(path)
    return resample_to_reference(label.array, label.affine, reference_shape, reference_affine, order=0,
                                 name=str(label.path))


def write_image(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray, dtype=np.float32) -> Path:
    """Write ``array`` as NIfTI (``.nii`` / ``.nii.gz``) atomically, with qform = sform = ``affine`` (code 1).

    ``array``: ``(X, Y, Z)`` (e.g. a uint8 label map) or channel-last ``(X, Y, Z, C)`` (e.g. float32 region
    probabilities, as the original wrote predictions); stored as ``dtype``. Returns the path.
    """
    path = Path(path)
    if not path.name.endswith((".nii", ".nii.gz")):
        raise ImageError(f"Output '{path}' must end in .nii or .nii.gz; image outputs are written as NIfTI.")
    data = np.asarray(array)
    if data.ndim not in (3, 4):
        raise ValueError(f"write_image needs a 3-D or 4-D array, got shape {data.shape}")
    affine = _check_affine(affine, str(path))
    data = data.astype(dtype, copy=False)
    image = nib.Nifti1Image(data, affine=None)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    image.header.set_data_dtype(data.dtype)
    image.header.set_xyzt_units("mm", "sec")
    with atomic_path(path) as tmp:
        if path.name.endswith(".gz"):
            _write_gzip(tmp, image.to_bytes())
        else:
            nib.save(image, tmp)
    return path


# Compressed outputs: nibabel makes the NIfTI bytes, deflated here on every core, as pigz does, because nibabel's
# gzip stream compresses on one core (1.4 s for the 102 MB probability map of a BraTS case). Level 1, nibabel's
# default: levels 2-3 give the same size and 6 saves 2 % for 20 % more time (benchmarks/README.md, fast paths).
GZIP_LEVEL = 1
_GZIP_BLOCK_BYTES = 4 << 20  # large enough that restarting the compressor per block costs < 0.1 % in size
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, mtime 0 (as nibabel), OS unknown


def _write_gzip(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as one standard gzip member, compressing blocks of it in parallel threads.

    Each block is raw deflate ending in a sync flush (the last in a final block): a sync flush ends on a byte
    boundary without ending the stream, so the blocks concatenate into one valid deflate stream that any gzip
    reader (nibabel, ITK / 3D Slicer, gunzip) decodes. zlib releases the GIL while it compresses.
    """
    view = memoryview(data)
    starts = range(0, max(len(view), 1), _GZIP_BLOCK_BYTES)

    def deflate(start: int) -> bytes:
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        final = start == starts[-1]
        return (compressor.compress(view[start:start + _GZIP_BLOCK_BYTES])
                + compressor.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH))

    with ThreadPoolExecutor(max_workers=min(len(starts), available_cores()), thread_name_prefix="gzip") as pool:
        checksum = pool.submit(zlib.crc32, view)
        blocks = pool.map(deflate, starts)
        with open(path, "wb") as stream:
            stream.write(_GZIP_HEADER)
            stream.writelines(blocks)  # in order, each as soon as it is ready
            stream.write(struct.pack("<II", checksum.result(), len(view) & 0xFFFFFFFF))
