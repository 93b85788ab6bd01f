"""Refining a BratsUNet result with clicks: its label map and volumes handed to ``bratsunet refine`` in the
worker (which keeps the guided model loaded between clicks), the answer put back into the same segmentation.

The points come from Markups point lists (or RAS tuples in mm), each with the region it is about (WT, TC or ET).
Only the box ``refine`` recomputed changes; the segmentation stays the user's (its digest is not renewed, so a
later Apply makes a new result beside it instead of refilling it). A failed or cancelled refinement leaves the
scene as it was (one :class:`~BratsUNetSlicer.transaction.SceneTransaction`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import slicer

from BratsUNetLib.cli.command_line import command_argv
from BratsUNetLib.errors import BratsUNetError
from BratsUNetSlicer import cases, results, scene_io, segment
from BratsUNetSlicer.jobs import start_job, temporary_folder
from BratsUNetSlicer.transaction import SceneTransaction
from BratsUNetSlicer.worker import Job, WorkerClient

REGIONS = ("WT", "TC", "ET")  # BratsUNetLib.data.labels.REGIONS, which needs scipy: not imported at module load


Point = tuple[tuple[float, float, float], str]  # (R, A, S) in mm, and the region (WT, TC or ET) it is about


def check_region(region: str) -> str:
    if region not in REGIONS:
        raise BratsUNetError(f"Unknown region '{region}'; use WT, TC or ET.")
    return region


def points_of(points: Any, region: str) -> list[Point]:
    """The points of a Markups point list (world RAS in mm: its transforms applied), or of a sequence of (R, A, S)
    triples, each with its region: the one the point was placed for (its description, see :func:`stamp_region`),
    else ``region``; [] for None."""
    check_region(region)
    if points is None:
        return []
    if hasattr(points, "GetNumberOfControlPoints"):
        found = []
        for index in range(points.GetNumberOfControlPoints()):
            position = [0.0, 0.0, 0.0]
            points.GetNthControlPointPositionWorld(index, position)
            own = points.GetNthControlPointDescription(index)
            found.append((tuple(float(v) for v in position), own if own in REGIONS else region))
        return found  # type: ignore[return-value]
    return [(tuple(float(v) for v in point), region) for point in points]  # type: ignore[misc]


def stamp_region(points: Any, region: str) -> None:
    """Give each point of a Markups list that has no region yet ``region`` (as its description, which the
    Markups module shows and saves with the list): a point keeps the region it was placed for when the panel's
    region selector changes later, so earlier points are not read again as points of another region."""
    check_region(region)
    for index in range(points.GetNumberOfControlPoints()):
        if points.GetNthControlPointDescription(index) not in REGIONS:
            points.SetNthControlPointDescription(index, region)


def save_for_undo(segmentation: Any) -> None:
    """Make the refinement one step of the Segment Editor's undo when the editor is editing ``segmentation``: the
    editor keeps its undo states itself (a ``vtkSegmentationHistory``), and an edit made outside it is undone only
    if its state was saved before the edit, as its own effects do."""
    widget = getattr(slicer.modules, "SegmentEditorWidget", None)  # set once the Segment Editor's panel exists
    editor = getattr(widget, "editor", None)
    edited = editor.segmentationNode() if editor is not None else None
    if edited is not None and edited.GetID() == segmentation.GetID():
        editor.saveStateForUndo()


def click_text(point: Point) -> str:
    """``R,A,S:REGION`` as ``bratsunet refine --add`` takes it."""
    return ",".join(f"{value:.4f}" for value in point[0]) + f":{point[1]}"


def start(worker: WorkerClient, segmentation: Any, model: str, add: list[Point], remove: list[Point],
          device: str, on_event: Callable[[dict], None] | None = None) -> Job:
    """Start refining ``segmentation`` (a BratsUNet result) with the guided ``model``; ``add`` / ``remove`` are
    points in a region / not in it (:func:`points_of`). The node is refilled in place when the job succeeds, as
    one step of the Segment Editor's undo."""
    if not add and not remove:
        raise BratsUNetError("No point to refine with; place a point in the add or the remove list.")
    inputs = cases.result_inputs(segmentation) if segmentation is not None else {}
    if segmentation is None or len(inputs) < len(scene_io.MODALITIES):
        name = segmentation.GetName() if segmentation is not None else "(none)"
        raise BratsUNetError(f"The segmentation '{name}' was not made by BratsUNet from four volumes still in the "
                             "scene; segment the case with BratsUNet first, then refine the result.")
    for modality in scene_io.MODALITIES:
        scene_io.check_volume(inputs[modality], scene_io.MODALITY_TITLES[modality])
    reference = inputs["flair"]
    # The current label map on the reference grid, as it is now (the user may have edited it since BratsUNet).
    labels = cases.label_array(cases.TrainingCase(segmentation.GetName(), inputs, segmentation))
    folder = temporary_folder("refine")
    try:
        images = {m: str(scene_io.input_file(inputs[m], folder / f"{m}.nii")) for m in scene_io.MODALITIES}
        current = cases.write_label_map(labels, reference, folder / "current.nii.gz")
        output = folder / "refined.nii.gz"
        argv = command_argv("refine", model=str(model), **images, segmentation=str(current),
                            add=[click_text(p) for p in add], remove=[click_text(p) for p in remove],
                            output=str(output), labels="brats2020", device=device)  # the scene's values
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    transaction = SceneTransaction(reference.GetScene())

    def finish(job: Job) -> None:
        if job.state != "succeeded":
            return
        transaction.keep(segmentation)
        display = segmentation.GetDisplayNode()
        shown_in_3d = display is not None and display.GetVisibility3D() and segmentation.GetSegmentation(
        ).ContainsRepresentation(slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName())
        table = segmentation.GetNodeReference(segment.TABLE_ROLE)
        transaction.keep(table)
        save_for_undo(segmentation)
        results.import_segmentation(output, reference, "brats2020", segmentation)
        if shown_in_3d:  # the surfaces are made again from the refined labels
            results.show_in_3d(segmentation, True)
        if table is not None and job.result.get("volumes_ml"):
            results.update_volumes_table(table, job.result["volumes_ml"])
        job.result.update(segmentation=segmentation, table=table)

    return start_job(worker, argv, transaction, on_event=on_event, on_finish=finish, folder=folder)
