"""Results in the scene: the tumour segmentation, probability maps, the volumes table and the training plot.

The segmentation node gets one segment per BraTS sub-region (name, colour and label value from
:func:`BratsUNetLib.data.labels.region_names`) with a standard terminology entry, on the reference input's geometry,
beside the inputs in the subject hierarchy. Re-running fills the same nodes again instead of adding new ones.
Every check runs before a node is created or changed, so a failure never leaves a half-made node.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import slicer
import vtk

from BratsUNetLib.errors import ImageError
from BratsUNetSlicer import scene_io

# SNOMED CT codes of each sub-region (category "Morphologically Altered Structure" of the DICOM master list),
# found in the brain.
_CATEGORY = "SCT^49755003^Morphologically Altered Structure"
_REGION = "SCT^12738006^Brain"
_TYPES = {
    "Necrotic tumor core": "SCT^6574001^Necrosis",
    "Peritumoral edema": "SCT^79654002^Edema",
    "Enhancing tumor": "SCT^108369006^Neoplasm",
}
_CONTEXT = "Segmentation category and type - DICOM master list"
_ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"

# Rows of the volumes table: key of the library's ``volumes_ml`` -> what the row says.
VOLUME_ROWS = {
    "NCR": "Necrotic tumor core (NCR)",
    "ED": "Peritumoral edema (ED)",
    "ET": "Enhancing tumor (ET)",
    "TC": "Tumor core (TC = NCR + ET)",
    "WT": "Whole tumor (WT = NCR + ED + ET)",
}
PROBABILITY_ROLE = "BratsUNetProbability"


def describe_volumes(volumes_ml: dict[str, float]) -> str:
    """The regions' volumes for the panel's status line: ``WT 42.1 mL, TC 12.0 mL, ET 6.3 mL``."""
    return ", ".join(f"{region} {volumes_ml[region]:.1f} mL" for region in ("WT", "TC", "ET") if region in volumes_ml)


def terminology_entry(segment_name: str) -> str:
    """Slicer's serialized terminology entry (``context~category~type~modifier~anatomic context~region~modifier``)."""
    return f"{_CONTEXT}~{_CATEGORY}~{_TYPES[segment_name]}~^^~{_ANATOMIC_CONTEXT}~{_REGION}~^^"


def segment_title(name: str, value: int) -> str:
    """The segment's name as the user sees it, with the label value it exports as: ``Enhancing tumor (label 4)``
    (``label 3`` in the BraTS 2021 scheme), so that the scheme chosen is visible in the scene."""
    return f"{name} (label {value})"


def show_in_3d(segmentation: Any, shown: bool) -> None:
    """Show ``segmentation`` as closed surfaces in the 3D views (made from its label map on first showing), or
    hide it there; the slice views are not changed."""
    display = segmentation.GetDisplayNode()
    if display is None:
        segmentation.CreateDefaultDisplayNodes()
        display = segmentation.GetDisplayNode()
    if shown:
        segmentation.CreateClosedSurfaceRepresentation()  # nothing to do when the surfaces are there already
    display.SetVisibility3D(shown)


def segment_id(segment_name: str) -> str:
    """Stable segment ID for a sub-region name, so scripts can find ``NecroticTumorCore`` etc."""
    return "".join(word.capitalize() for word in segment_name.split())


def place_beside(node: Any, reference: Any) -> None:
    """Put ``node`` in the subject hierarchy folder (patient/study) that holds ``reference``."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(node.GetScene())
    reference_item = hierarchy.GetItemByDataNode(reference) if hierarchy is not None else 0
    if not reference_item:  # a scene without subject hierarchy items (e.g. built by a script): nothing to follow
        return
    parent = hierarchy.GetItemParent(reference_item)
    item = hierarchy.GetItemByDataNode(node)
    if item:
        hierarchy.SetItemParent(item, parent)
    else:
        hierarchy.CreateItem(parent, node)


def import_segmentation(label_path: str | Path, reference: Any, scheme: str,
                        segmentation: Any = None, name: str | None = None) -> Any:
    """Fill ``segmentation`` (created when None) with the BraTS label map in ``label_path``; return it.

    ``reference`` is the reference input volume: the label map must overlap it and becomes the segmentation's
    reference geometry. The file is read and checked outside the scene (overlap, label values) before any node
    is created or changed.
    """
    # Imported on use: the labels bring scipy, which the panel may still have to install.
    from BratsUNetLib.data.labels import check_label_values, region_names

    regions = region_names(scheme)
    labelmap = scene_io.read_volume(label_path, labelmap=True)
    if not scene_io.boxes_overlap(scene_io.ras_bounds(labelmap), scene_io.ras_bounds(reference)):
        raise ImageError(f"The segmentation '{label_path}' does not overlap the input '{reference.GetName()}'; "
                         "check that the model's first input is the reference volume.")
    check_label_values(slicer.util.arrayFromVolume(labelmap), [0, *(info.value for info in regions)], label_path)
    image = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(labelmap)
    image_to_world = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(image_to_world)

    if segmentation is None:
        scene = reference.GetScene()
        segmentation = scene.AddNewNodeByClass(
            "vtkMRMLSegmentationNode", name or scene.GenerateUniqueName(f"{reference.GetName()} tumor"))
        segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    content = segmentation.GetSegmentation()
    was_modifying = segmentation.StartModify()
    try:
        # A refilled result must not keep surfaces of the previous one: they are made again from the new labels.
        content.RemoveRepresentation(slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName())
        content.RemoveAllSegments()
        for info in regions:
            sid = segment_id(info.name)
            content.AddEmptySegment(sid, segment_title(info.name, info.value), info.rgb_float)
            content.GetSegment(sid).SetTerminology(terminology_entry(info.name))
            content.GetSegment(sid).SetLabelValue(info.value)  # "Export to label map" keeps the scheme's values
            threshold = vtk.vtkImageThreshold()
            threshold.SetInputData(image)
            threshold.ThresholdBetween(info.value, info.value)
            threshold.SetInValue(1)
            threshold.SetOutValue(0)
            threshold.SetOutputScalarTypeToUnsignedChar()
            threshold.Update()
            mask = slicer.vtkOrientedImageData()
            mask.ShallowCopy(threshold.GetOutput())
            mask.SetImageToWorldMatrix(image_to_world)
            slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
                mask, segmentation, sid, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    finally:
        segmentation.EndModify(was_modifying)
    place_beside(segmentation, reference)
    return segmentation


def import_probabilities(channels: Any, segmentation: Any, reference: Any, regions: list[str]) -> list[Any]:
    """Probability maps ``(K, k, j, i)`` (:func:`scene_io.read_channels`) on the reference grid as one scalar
    volume per region, kept with ``segmentation`` (node references), so that a new run refills them."""
    scene = reference.GetScene()
    nodes = []
    for region, channel in zip(regions, channels):
        role = f"{PROBABILITY_ROLE}{region}"
        node = segmentation.GetNodeReference(role)
        if node is None:
            node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode",
                                           f"{segmentation.GetName()} {region} probability")
            node.CreateDefaultDisplayNodes()
            segmentation.SetNodeReferenceID(role, node.GetID())
        node.CopyOrientation(reference)
        slicer.util.updateVolumeFromArray(node, channel)
        place_beside(node, reference)
        nodes.append(node)
    return nodes


def _table_columns(table_node: Any, columns: list[tuple[str, str]]) -> vtk.vtkTable:
    """The node's table emptied and given ``columns`` (name, "string" | "double") if they differ."""
    table = table_node.GetTable()
    names = [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())]
    if names != [name for name, _ in columns]:
        table_node.RemoveAllColumns()
        for name, kind in columns:
            array = vtk.vtkStringArray() if kind == "string" else vtk.vtkDoubleArray()
            array.SetName(name)
            table.AddColumn(array)
    return table


def update_volumes_table(table_node: Any, volumes_ml: dict[str, float]) -> None:
    """Fill ``table_node`` with one row per region: its name and volume in mL (library keys NCR, ED, ET...)."""
    keys = [key for key in VOLUME_ROWS if key in volumes_ml] + [k for k in volumes_ml if k not in VOLUME_ROWS]
    was_modifying = table_node.StartModify()
    table = _table_columns(table_node, [("Region", "string"), ("Volume (mL)", "double")])
    table.SetNumberOfRows(len(keys))
    for row, key in enumerate(keys):
        table.SetValue(row, 0, vtk.vtkVariant(VOLUME_ROWS.get(key, key)))
        table.SetValue(row, 1, vtk.vtkVariant(float(volumes_ml[key])))
    table_node.Modified()
    table_node.EndModify(was_modifying)


# Training curves: table column -> how the value is read from an "epoch" event.
TRAINING_COLUMNS = ("epoch", "loss", "val_loss", "Dice WT", "Dice TC", "Dice ET", "lr", "seconds")


def _epoch_value(event: dict[str, Any], column: str) -> float:
    value = (event.get("dice") or {}).get(column.split()[1]) if column.startswith("Dice ") else event.get(column)
    return float(value) if value is not None else math.nan


def reset_training_table(table_node: Any) -> None:
    """Empty the training table (a new training run, not a resumed one)."""
    _table_columns(table_node, [(name, "double") for name in TRAINING_COLUMNS]).SetNumberOfRows(0)
    table_node.Modified()


def add_epoch_row(table_node: Any, event: dict[str, Any]) -> None:
    """Append one ``epoch`` event as a row (a repeated epoch number, after a resume, replaces its row)."""
    table = _table_columns(table_node, [(name, "double") for name in TRAINING_COLUMNS])
    epochs = [table.GetValue(r, 0).ToDouble() for r in range(table.GetNumberOfRows())]
    row = epochs.index(event["epoch"]) if event["epoch"] in epochs else table.InsertNextBlankRow()
    for column, name in enumerate(TRAINING_COLUMNS):
        table.SetValue(row, column, vtk.vtkVariant(_epoch_value(event, name)))
    table_node.Modified()


def training_chart(table_node: Any) -> Any:
    """A plot chart of loss, validation loss and Dice per epoch from ``table_node`` (made once, then reused)."""
    scene = table_node.GetScene()
    chart = table_node.GetNodeReference("BratsUNetChart")
    if chart is not None:
        return chart
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{table_node.GetName()} chart")
    chart.SetTitle("BratsUNet training")
    chart.SetXAxisTitle("epoch")
    chart.SetYAxisTitle("loss / Dice")
    for column in TRAINING_COLUMNS[1:6]:
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{table_node.GetName()} {column}")
        series.SetAndObserveTableNodeID(table_node.GetID())
        series.SetXColumnName("epoch")
        series.SetYColumnName(column)
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    table_node.SetNodeReferenceID("BratsUNetChart", chart.GetID())
    return chart
