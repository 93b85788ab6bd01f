"""Training cases found in the scene, and their export to the BraTS file layout the library trains on.

A case is the FLAIR, T1, T1ce and T2 volumes plus a reference label of one patient: a segmentation node whose
segments carry BraTS names (or label values), or a label map volume with BraTS values (1, 2, 4). Nodes belong to
the same case when they sit in the same subject hierarchy folder and share the name prefix before the
modality suffix (``BraTS20_Training_001_flair``; a folder of volumes named just ``FLAIR``, ``T1``... works too).
Every group of nodes named like a case's volumes or label becomes a case; what it lacks is listed in
``problems`` so the panel can say why a case is not used instead of silently dropping it.

A BratsUNet result is a prediction, not a reference, until the user corrects it and adds it
(:func:`add_corrected_case`): from then on it is the label of the case of the volumes it was made from, found
through the references the result keeps to them (whatever the nodes are called).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import slicer
import vtk

from BratsUNetLib.errors import BratsUNetError, ImageError
from BratsUNetSlicer import scene_io, segment

# Label values written for training (BraTS 2020); the config's labels [2, 1, 4] make the WT/TC/ET hierarchy.
LABEL_VALUES = {"NCR": 1, "ED": 2, "ET": 4}
# Drawing order when segments overlap: the inner region wins, as in BraTS label maps.
_PAINT_ORDER = ("ED", "NCR", "ET")
_SEGMENT_NAMES = (
    (re.compile(r"necro|non.?enhanc|\bncr\b|\bnet\b"), "NCR"),
    (re.compile(r"enhanc|\bet\b"), "ET"),
    (re.compile(r"o?edema|\bed\b"), "ED"),
)
_SEGMENT_VALUES = {"1": "NCR", "2": "ED", "3": "ET", "4": "ET"}


@dataclass
class TrainingCase:
    """One case: ``volumes`` by modality, its ``label`` node, what prevents using it (empty when usable) and what
    the panel should say about it besides (``notes``, e.g. which of two labels is used)."""

    name: str
    volumes: dict[str, Any] = field(default_factory=dict)
    label: Any = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return not self.problems


def segment_region(name: str) -> str | None:
    """The BraTS sub-region (NCR, ED, ET) a segment name stands for: its words, or a label value."""
    text = name.strip().lower()
    value = re.fullmatch(r"(?:label[_ ]?)?(\d+)", text)
    if value:
        return _SEGMENT_VALUES.get(value.group(1))
    return next((region for pattern, region in _SEGMENT_NAMES if pattern.search(text)), None)


def _folder(hierarchy: Any, node: Any) -> int:
    """The subject hierarchy item holding ``node`` (0 when it has none, e.g. in a scene built by a script)."""
    item = hierarchy.GetItemByDataNode(node) if hierarchy is not None else 0
    return hierarchy.GetItemParent(item) if item else 0


def discover_cases(scene: Any) -> list[TrainingCase]:
    """Every case in ``scene`` (usable or not), in the order their first node was added."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    groups: dict[tuple[int, str], TrainingCase] = {}
    candidates = [scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
                  for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]
    candidates += [scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
                   for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]
    for node in candidates:
        inputs = result_inputs(node) if node.GetAttribute(segment.TRAINING_LABEL_ATTRIBUTE) else {}
        # A corrected result joins the case of the first volume it was made from (named like a case or not).
        anchor = next(iter(inputs.values()), node)
        prefix, role = scene_io.split_name(anchor.GetName())
        if inputs:
            role = "label"
        is_label = node.IsA("vtkMRMLSegmentationNode") or node.IsA("vtkMRMLLabelMapVolumeNode")
        if role is None or (is_label and role != "label"):
            continue
        case = groups.setdefault((_folder(hierarchy, anchor), prefix.lower()),
                                 TrainingCase(prefix or anchor.GetName()))
        for modality, volume in inputs.items():
            case.volumes.setdefault(modality, volume)
        if role == "label":
            corrected = bool(inputs)  # a result the user corrected and added: the latest word on this case
            earlier = case.label
            if earlier is None:
                case.label = node
            elif corrected != bool(earlier.GetAttribute(segment.TRAINING_LABEL_ATTRIBUTE)):
                # A case loaded with its <case>_seg, segmented, corrected and added: the correction is the label.
                case.label, other = (node, earlier) if corrected else (earlier, node)
                case.notes.append(f"label {case.label.GetName()} (the corrected result), not {other.GetName()}")
            else:
                case.problems.append(f"two labels ({earlier.GetName()}, {node.GetName()})")
        elif role in case.volumes:
            case.problems.append(f"two {scene_io.MODALITY_TITLES[role]} volumes "
                                 f"({case.volumes[role].GetName()}, {node.GetName()})")
        else:
            case.volumes[role] = node
    found = list(groups.values())  # every group has a volume or a label named like a case
    for case in found:
        missing = [scene_io.MODALITY_TITLES[m] for m in scene_io.MODALITIES if m not in case.volumes]
        if missing:
            case.problems.append("missing " + ", ".join(missing))
        if case.label is None:
            case.problems.append("no label (a segmentation or label map named like <case>_seg, or a corrected "
                                 "BratsUNet result added as a training case)")
        elif case.label.IsA("vtkMRMLSegmentationNode"):
            unknown = [name for name in _segment_names(case.label) if segment_region(name) is None]
            if unknown:
                case.problems.append(f"segments not named as BraTS sub-regions: {', '.join(unknown)}")
            if case.label.GetAttribute(segment.TRAINING_LABEL_ATTRIBUTE):  # the corrections, with their status
                model = case.label.GetAttribute(segment.TRAINED_INTO_ATTRIBUTE)
                case.notes.insert(0, f"corrected {case.label.GetName()}, "
                                     + (f"fine-tuned into {model}" if model else "not trained on yet"))
    return found


def result_inputs(segmentation: Any) -> dict[str, Any]:
    """The input volumes, by modality, of a segmentation BratsUNet made; empty for any other node."""
    if not segmentation.IsA("vtkMRMLSegmentationNode"):
        return {}
    found = {m: segmentation.GetNodeReference(f"{segment.INPUT_ROLE}{m}") for m in scene_io.MODALITIES}
    return {modality: node for modality, node in found.items() if node is not None}


def add_corrected_case(segmentation: Any) -> TrainingCase:
    """Make a BratsUNet result the user corrected the reference label of its case; return that case.

    It replaces a corrected result of the same volumes added earlier (the latest correction is the label). The
    case is discovered again and checked (:func:`check_case`) as training will check it; when it cannot be used
    every result is left as it was and the error says why.
    """
    inputs = result_inputs(segmentation) if segmentation is not None else {}
    if not inputs:
        name = segmentation.GetName() if segmentation is not None else "(none)"
        raise BratsUNetError(f"The segmentation '{name}' was not made by BratsUNet (or its input volumes were "
                             "removed); segment the case with BratsUNet, correct the result, then add it, or name "
                             "a segmentation <case>_seg beside volumes <case>_flair, _t1, _t1ce, _t2.")
    scene = segmentation.GetScene()
    same_inputs = {m: node.GetID() for m, node in inputs.items()}
    earlier = [node for node in slicer.util.getNodesByClass("vtkMRMLSegmentationNode", scene)
               if node.GetAttribute(segment.TRAINING_LABEL_ATTRIBUTE) and node is not segmentation
               and {m: volume.GetID() for m, volume in result_inputs(node).items()} == same_inputs]
    for node in earlier:
        node.RemoveAttribute(segment.TRAINING_LABEL_ATTRIBUTE)
    segmentation.SetAttribute(segment.TRAINING_LABEL_ATTRIBUTE, "true")
    try:
        case = next(case for case in discover_cases(scene) if case.label is segmentation)
        check_case(case)
    except BaseException:
        segmentation.RemoveAttribute(segment.TRAINING_LABEL_ATTRIBUTE)
        for node in earlier:
            node.SetAttribute(segment.TRAINING_LABEL_ATTRIBUTE, "true")
        raise
    return case


def describe_cases(found: list[TrainingCase]) -> str:
    """One line per case for the panel: used, or why not."""
    return "\n".join(f"{case.name}: " + ("; ".join(["ready", *case.notes]) if case.usable
                                         else "not used, " + "; ".join(case.problems)) for case in found)


def _segment_names(segmentation: Any) -> list[str]:
    content = segmentation.GetSegmentation()
    return [content.GetNthSegment(i).GetName() for i in range(content.GetNumberOfSegments())]


def label_array(case: TrainingCase) -> np.ndarray:
    """The case's label as a BraTS 2020 label map on the FLAIR volume's grid, Slicer's (K, J, I) order."""
    from BratsUNetSlicer.transaction import scratch_nodes

    reference = case.volumes["flair"]
    if case.label.IsA("vtkMRMLSegmentationNode"):
        content = case.label.GetSegmentation()
        masks = {}
        for i in range(content.GetNumberOfSegments()):
            region = segment_region(content.GetNthSegment(i).GetName())
            with scratch_nodes(case.label.GetScene()):  # the export's temporary nodes leave nothing behind
                mask = slicer.util.arrayFromSegmentBinaryLabelmap(case.label, content.GetNthSegmentID(i), reference)
            masks[region] = masks.get(region, False) | (mask > 0)
        labels = np.zeros(slicer.util.arrayFromVolume(reference).shape, dtype=np.uint8)
        for region in _PAINT_ORDER:
            if region in masks:
                labels[masks[region]] = LABEL_VALUES[region]
        return labels
    labels = slicer.util.arrayFromVolume(case.label)
    if not scene_io.same_geometry(case.label, reference):
        raise ImageError(f"The label map '{case.label.GetName()}' is not on the grid of "
                         f"'{reference.GetName()}'; resample it (Resample Scalar/Vector/DWI Volume) first.")
    present = set(np.unique(labels).tolist())
    if present - {0, 1, 2, 3, 4} or {3, 4} <= present:
        raise ImageError(f"The label map '{case.label.GetName()}' has the values {sorted(present)}; BraTS labels are "
                         "1 (necrotic core), 2 (edema) and 4 (enhancing tumor; 3 in BraTS 2021 and later).")
    labels = labels.astype(np.uint8)
    labels[labels == 3] = LABEL_VALUES["ET"]  # BraTS 2021+ enhancing tumour, trained as the 2020 value
    return labels


def check_case(case: TrainingCase) -> np.ndarray:
    """Check a case's volumes and label before anything of it is written; return its label map (:func:`label_array`)."""
    if not case.usable:
        raise ImageError(f"Case '{case.name}' cannot be used: {'; '.join(case.problems)}.")
    for modality in scene_io.MODALITIES:
        scene_io.check_volume(case.volumes[modality], f"{scene_io.MODALITY_TITLES[modality]} of {case.name}")
    return label_array(case)


def file_name(text: str) -> str:
    """``text`` (a case name) made safe as a file or folder name."""
    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "case"


def export_case(case: TrainingCase, folder: str | Path, scheme: str = "brats2020") -> dict[str, Any]:
    """The config entry ``{"image": [flair, t1, t1ce, t2], "label": seg}`` of a usable case (the original's).

    The label is written with the values of ``scheme`` (the model's to be trained: enhancing tumour 4 in BraTS
    2020, 3 in BraTS 2021), so that its regions are the ones the model's config names.

    Volumes unchanged since they were loaded are used from their files, as segmentation does
    (:func:`scene_io.input_file`), so a model trained here sees its inputs as it will when segmenting; others
    are written to ``folder/<case>/<case>_<modality>.nii.gz``, and the label always is (``_seg``).
    """
    from BratsUNetLib.data.labels import get_scheme

    labels = check_case(case)
    labels[labels == LABEL_VALUES["ET"]] = get_scheme(scheme).enhancing
    name = file_name(case.name)
    case_dir = Path(folder) / name
    case_dir.mkdir(parents=True, exist_ok=True)
    images = [str(scene_io.input_file(case.volumes[modality], case_dir / f"{name}_{modality}.nii.gz"))
              for modality in scene_io.MODALITIES]
    label_path = write_label_map(labels, case.volumes["flair"], case_dir / f"{name}_seg.nii.gz")
    return {"image": images, "label": str(label_path)}


def write_label_map(labels: np.ndarray, reference: Any, path: str | Path) -> Path:
    """Write ``labels`` (Slicer's K, J, I order, on ``reference``'s grid) as a NIfTI label map, as Slicer saves it."""
    label_node = slicer.vtkMRMLLabelMapVolumeNode()  # outside the scene: nothing is added to it
    label_node.CopyOrientation(reference)
    label_node.SetAndObserveImageData(vtk.vtkImageData())
    slicer.util.updateVolumeFromArray(label_node, labels)
    return scene_io.export_volume(label_node, path)
