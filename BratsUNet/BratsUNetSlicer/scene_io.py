"""Scene volumes to NIfTI files and back, through Slicer's own storage nodes and Volumes logic.

This is the only place on the Slicer side that touches geometry: files are written by
``vtkMRMLVolumeArchetypeStorageNode`` and read by the Volumes logic (or by that storage node alone, for results
checked before they enter the scene), exactly as Slicer saves and loads them, so a volume keeps its voxels at
the same RAS points whatever the handedness of its file (Slicer reverses the K axis of left-handed files;
nibabel in the worker follows the affine either way). Volumes unchanged since they were loaded are handed to the
worker as their own files (:func:`source_file`), and 4-D files, which Slicer's readers refuse, are read with
nibabel and checked against the grid Slicer would give them (:func:`read_channels`).

Node names are matched to modalities here too (BraTS 2020/2021 ``_flair _t1 _t1ce _t2 _seg``, BraTS 2023
``-t2f -t1n -t1c -t2w -seg``, case-insensitive).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import slicer
import vtk
from slicer.i18n import tr as _

from BratsUNetLib.errors import ImageError
from BratsUNetLib.modalities import MODALITIES

MODALITY_TITLES = {"flair": "FLAIR", "t1": "T1", "t1ce": "T1ce", "t2": "T2"}

# Name suffix (after "_", "-", "." or a space) -> modality; "label" marks a reference segmentation.
_SUFFIXES = {
    "flair": "flair", "t2f": "flair", "t2flair": "flair",
    "t1": "t1", "t1n": "t1", "t1w": "t1",
    "t1ce": "t1ce", "t1c": "t1ce", "t1gd": "t1ce", "t1post": "t1ce",
    "t2": "t2", "t2w": "t2",
    "seg": "label", "label": "label", "labels": "label", "gt": "label", "segmentation": "label",
}
_SUFFIX_PATTERN = re.compile(r"^(?P<prefix>.*?)[_\-. ]?(?P<suffix>[a-z0-9]+)$")


def split_name(name: str) -> tuple[str, str | None]:
    """``(case prefix, modality or "label" or None)`` for a node name such as ``BraTS20_Training_001_t1ce``.

    The prefix is what the four modalities of one case share (``BraTS20_Training_001``); a name without a known
    suffix gives ``(name, None)``. A volume named just ``FLAIR`` is a FLAIR with an empty prefix.
    """
    # A file extension may remain in a node name, and Slicer adds "_1", "_2" to repeated names.
    text = re.sub(r"(\.nii(\.gz)?|\.nrrd)$", "", name.strip(), flags=re.IGNORECASE)
    for candidate in (text, re.sub(r"_\d+$", "", text)):
        match = _SUFFIX_PATTERN.match(candidate.lower())
        if match is not None and match.group("suffix") in _SUFFIXES:
            return candidate[: len(match.group("prefix"))], _SUFFIXES[match.group("suffix")]
    return name, None


def scalar_volumes(scene: Any) -> list[Any]:
    """The scalar (not label map) volume nodes of the scene, in the order they were added."""
    nodes = [scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
             for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]
    return [node for node in nodes if not node.IsA("vtkMRMLLabelMapVolumeNode")]


def guess_inputs(scene: Any) -> dict[str, Any]:
    """The four input volumes of one case chosen by node name: the case the user is looking at.

    Volumes are grouped by case prefix. The case of the active volume (the one Slicer shows, e.g. the volume
    just loaded) wins when all four of its modalities are there; otherwise the group with the most modalities,
    and among equals the case loaded last. Modalities not found are left out.
    """
    cases: dict[str, dict[str, Any]] = {}
    for node in scalar_volumes(scene):
        prefix, modality = split_name(node.GetName())
        if modality in MODALITIES:
            cases.setdefault(prefix.lower(), {})[modality] = node
    if not cases:
        return {}
    active = active_volume(scene)
    if active is not None:
        prefix, modality = split_name(active.GetName())
        shown = cases.get(prefix.lower()) if modality in MODALITIES else None
        if shown is not None and len(shown) == len(MODALITIES):
            return dict(shown)
    best = max(reversed(list(cases.values())), key=len)
    return dict(best)


def active_volume(scene: Any) -> Any:
    """The volume Slicer shows (its selection node's active volume), or None."""
    selection = scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    volume_id = selection.GetActiveVolumeID() if selection is not None else None
    return scene.GetNodeByID(volume_id) if volume_id else None


# What a user calls the node classes a selector or a script may hand over by mistake (most specific first).
_NODE_KINDS = (
    ("vtkMRMLLabelMapVolumeNode", "a label map volume"),
    ("vtkMRMLVectorVolumeNode", "a vector (multi-component) volume"),
    ("vtkMRMLDiffusionTensorVolumeNode", "a diffusion tensor volume"),
    ("vtkMRMLScalarVolumeNode", "a scalar volume"),
    ("vtkMRMLSegmentationNode", "a segmentation"),
    ("vtkMRMLModelNode", "a model (surface mesh)"),
    ("vtkMRMLMarkupsNode", "a markups node"),
    ("vtkMRMLTableNode", "a table"),
    ("vtkMRMLTransformNode", "a transform"),
)


def describe_kind(node: Any) -> str:
    """What kind of node ``node`` is, in words (``"a segmentation"``), or its class name."""
    return next((words for cls, words in _NODE_KINDS if node.IsA(cls)), f"a {node.GetClassName()} node")


def check_node_kind(node: Any, class_name: str, title: str, expected: str, fix: str) -> None:
    """Raise :class:`ImageError` when ``node`` (a selector's value, None allowed) is not a ``class_name``.

    ``title`` names the selector, ``expected`` the kind it takes in words, ``fix`` what to do; checked before
    any work, so a wrong node never reaches a call that expects another kind.
    """
    if node is None:
        return
    if not hasattr(node, "IsA") or not hasattr(node, "GetName"):
        raise ImageError(f"The {title} is {type(node).__name__!r}, not a node of the scene; {fix}.")
    if not node.IsA(class_name) or (class_name == "vtkMRMLScalarVolumeNode" and not is_plain_scalar(node)):
        raise ImageError(f"The {title} '{node.GetName()}' is {describe_kind(node)}, not {expected}; {fix}.")


def check_node_roles(inputs: dict[str, Any], outputSegmentation: Any = None, volumesTable: Any = None,
                     trainingTable: Any = None) -> None:
    """Every node given to the logic is of the kind its role takes (a selector or a script can hold any node):
    ``inputs`` (modality -> node) scalar volumes, ``outputSegmentation`` a segmentation, the tables tables."""
    for modality, node in inputs.items():
        title = MODALITY_TITLES[modality]
        check_node_kind(node, "vtkMRMLScalarVolumeNode", _("{title} input").format(title=title),
                        _("an MRI volume (a scalar volume)"),
                        _("choose a single 3-D MRI volume in the {title} selector").format(title=title))
    check_node_kind(outputSegmentation, "vtkMRMLSegmentationNode", _("output segmentation"), _("a segmentation"),
                    _('choose a segmentation or "Create new Segmentation"'))
    for node, title in ((volumesTable, _("volumes table")), (trainingTable, _("training table"))):
        check_node_kind(node, "vtkMRMLTableNode", title, _("a table"), _('choose a table or "Create new Table"'))


def is_plain_scalar(node: Any) -> bool:
    """A scalar volume that is an image (not a label map, vector or tensor volume)."""
    return node.IsA("vtkMRMLScalarVolumeNode") and not any(
        node.IsA(cls) for cls in ("vtkMRMLLabelMapVolumeNode", "vtkMRMLVectorVolumeNode",
                                  "vtkMRMLDiffusionTensorVolumeNode"))


def check_volume(node: Any, title: str) -> None:
    """Raise :class:`ImageError` unless ``node`` is a non-empty 3-D scalar volume (``title`` names its role)."""
    if node is None:
        raise ImageError(f"No {title} volume is selected; choose one in the {title} selector.")
    if not hasattr(node, "IsA"):
        raise ImageError(f"The {title} input is {type(node).__name__!r}, not a volume node; choose a single 3-D "
                         "MRI volume.")
    name = node.GetName()
    if not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise ImageError(f"The {title} input '{name}' is {describe_kind(node)}, not an MRI volume; choose a single "
                         f"3-D MRI volume in the {title} selector.")
    if node.IsA("vtkMRMLVectorVolumeNode") or not is_plain_scalar(node):
        raise ImageError(f"The {title} input '{name}' is not a scalar volume (it has several components, e.g. a "
                         "4-D or colour image); choose a single 3-D MRI volume.")
    image = node.GetImageData()
    dims = image.GetDimensions() if image is not None else (0, 0, 0)
    if min(dims) == 0:
        raise ImageError(f"The {title} input '{name}' has no voxels; load the image again.")
    if image.GetNumberOfScalarComponents() != 1:
        raise ImageError(f"The {title} input '{name}' has {image.GetNumberOfScalarComponents()} components per "
                         "voxel (a 4-D volume); choose a single 3-D MRI volume.")
    if min(dims) == 1:
        raise ImageError(f"The {title} input '{name}' is 2-D ({dims[0]}x{dims[1]}x{dims[2]} voxels); the network "
                         "needs a 3-D volume.")
    voxels = slicer.util.arrayFromVolume(node)
    if np.issubdtype(voxels.dtype, np.floating):
        bad = int(voxels.size - np.count_nonzero(np.isfinite(voxels)))
        if bad:
            raise ImageError(f"The {title} input '{name}' contains {bad} NaN or infinite voxel values; replace them "
                             "(e.g. with 0) and segment again.")
    low, high = image.GetScalarRange()
    if low == high:
        raise ImageError(f"The {title} input '{name}' is empty (every voxel is {low:g}); choose the MRI volume.")
    transform = node.GetParentTransformNode()
    if transform is not None and not transform.IsTransformToWorldLinear():
        raise ImageError(f"The {title} input '{name}' is under a non-linear transform; harden the transform "
                         "(Data module, right-click) before segmenting.")


def export_volume(node: Any, path: str | Path) -> Path:
    """Write a volume to ``path`` (NIfTI, compressed for ``.nii.gz``) as Slicer saves it, with its parent
    transform applied.

    A linear parent transform (e.g. a registration result) is folded into the written geometry on a
    temporary node that shares the voxels, so the scene is left untouched.
    """
    path = Path(path)
    source = node
    transform = node.GetParentTransformNode()
    if transform is not None:
        to_world = vtk.vtkMatrix4x4()
        transform.GetMatrixTransformToWorld(to_world)
        ijk_to_ras = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(ijk_to_ras)
        vtk.vtkMatrix4x4.Multiply4x4(to_world, ijk_to_ras, ijk_to_ras)
        source = slicer.vtkMRMLScalarVolumeNode()
        source.SetName(node.GetName())
        source.SetIJKToRASMatrix(ijk_to_ras)
        source.SetAndObserveImageData(node.GetImageData())
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(path.name.lower().endswith(".gz"))
    if not storage.WriteData(source):
        raise ImageError(f"Could not write '{node.GetName()}' to '{path}'; check the free space in the temporary "
                         "folder.")
    return path


def slicer_ijk_to_ras(affine: np.ndarray, shape: Iterable[int]) -> tuple[np.ndarray, bool]:
    """The IJK-to-RAS matrix Slicer gives a NIfTI file with this nibabel ``affine`` and ``shape``, and whether
    Slicer's array is the file's reversed along K (it is for left-handed files, to keep IJK right-handed)."""
    matrix = np.asarray(affine, dtype=float)
    if np.linalg.det(matrix[:3, :3]) >= 0:
        return matrix, False
    flip = np.diag([1.0, 1.0, -1.0, 1.0])
    flip[2, 3] = list(shape)[2] - 1
    return matrix @ flip, True


def ijk_to_ras(node: Any) -> np.ndarray:
    """A volume node's IJK-to-RAS matrix as a 4x4 array."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def source_file(node: Any) -> Path | None:
    """The NIfTI file ``node`` was loaded from, when it still holds exactly what the node shows; else None.

    Giving the worker that file rather than a re-export keeps the file's own voxel order. Slicer reverses the
    K axis of left-handed files on load, which is the same image at the same points but not the same array, and
    a network (unless its config reorients) sees arrays: the file itself gives the voxels of ``bratsunet
    segment`` on it. Used only when the node is unchanged since it was read, has no parent transform, and
    nibabel (what the worker reads with) places the file's voxels where Slicer placed the node's.
    """
    storage = node.GetStorageNode()
    path = Path(storage.GetFileName() or "") if storage is not None else None
    if (path is None or not path.is_file() or not path.name.lower().endswith((".nii", ".nii.gz"))
            or storage.GetNumberOfFileNames() > 1 or node.GetModifiedSinceRead()
            or node.GetParentTransformNode() is not None):
        return None
    import nibabel  # on use: a library package the panel may still have to install

    image = nibabel.load(str(path))
    dims = node.GetImageData().GetDimensions()
    if image.ndim != 3 or tuple(image.shape) != tuple(dims):
        return None
    expected, _flipped = slicer_ijk_to_ras(image.affine, image.shape)
    return path if np.allclose(expected, ijk_to_ras(node), atol=1e-3) else None


def read_channels(path: str | Path, reference: Any) -> np.ndarray:
    """A 4-D NIfTI ``(x, y, z, C)`` on ``reference``'s grid as ``(C, K, J, I)``, Slicer's array order.

    Raises :class:`ImageError` when the file does not lie on the reference volume's grid.
    """
    import nibabel  # on use: a library package the panel may still have to install

    image = nibabel.load(str(path))
    matrix, flipped = slicer_ijk_to_ras(image.affine, image.shape[:3])
    if (image.ndim != 4 or tuple(image.shape[:3]) != tuple(reference.GetImageData().GetDimensions())
            or not np.allclose(matrix, ijk_to_ras(reference), atol=1e-3)):
        raise ImageError(f"'{path}' is not on the grid of '{reference.GetName()}'; segment again.")
    data = np.asarray(image.dataobj, dtype=np.float32)
    if flipped:
        data = data[:, :, ::-1]
    # nibabel's (x, y, z) array is Slicer's (k, j, i) array transposed.
    return np.ascontiguousarray(data.transpose(3, 2, 1, 0))


def input_file(node: Any, path: str | Path) -> Path:
    """A NIfTI file the worker can read for ``node``: its unchanged source file, else an export to ``path``."""
    return source_file(node) or export_volume(node, path)


def read_volume(path: str | Path, labelmap: bool = False) -> Any:
    """Read a NIfTI file into a new volume node outside the scene, with the storage node Slicer loads it with.

    For results that are checked before anything is added to the scene.
    """
    node = slicer.vtkMRMLLabelMapVolumeNode() if labelmap else slicer.vtkMRMLScalarVolumeNode()
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        raise ImageError(f"Slicer could not read '{path}' as a volume; check that the file exists and holds one "
                         "3-D image (NIfTI or NRRD) on a regular, unsheared grid.")
    return node


def load_volume(path: str | Path, name: str, labelmap: bool = False) -> Any:
    """Load a NIfTI file into the scene as Slicer's "Add data" does (Volumes logic); return the new node."""
    node = slicer.modules.volumes.logic().AddArchetypeVolume(str(path), name, 1 if labelmap else 0)
    if node is None:
        raise ImageError(f"Slicer could not read '{path}' as a volume; check that the file exists and holds one "
                         "3-D image (NIfTI or NRRD) on a regular, unsheared grid.")
    return node


def same_geometry(a: Any, b: Any) -> bool:
    """Whether two volumes have the same voxel grid: dimensions and IJK-to-RAS matrix (to 1e-4 mm)."""
    same_dims = a.GetImageData().GetDimensions() == b.GetImageData().GetDimensions()
    return same_dims and bool(np.abs(ijk_to_ras(a) - ijk_to_ras(b)).max() < 1e-4)


def ras_bounds(node: Any) -> list[float]:
    """``[xmin, xmax, ymin, ymax, zmin, zmax]`` in RAS millimetres of a volume's voxel centres' box."""
    bounds = [0.0] * 6
    node.GetRASBounds(bounds)
    return bounds


def boxes_overlap(a: Iterable[float], b: Iterable[float]) -> bool:
    """Whether two ``[xmin, xmax, ymin, ymax, zmin, zmax]`` boxes share any volume."""
    a, b = list(a), list(b)
    return all(a[2 * i] < b[2 * i + 1] and b[2 * i] < a[2 * i + 1] for i in range(3))
