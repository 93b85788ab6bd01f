"""A job's changes to the scene, undone as a whole when the job does not succeed.

Segmenting, training and fine-tuning add nodes (a training table and its chart before the run, a segmentation
and its table after it) and refill nodes the user chose (an output segmentation, a training table). A
:class:`SceneTransaction` makes "a failed or cancelled job leaves the scene exactly as it was" structural rather
than a check in each place that could fail:

- while its code runs inside :meth:`SceneTransaction.recording`, every node added to the scene is recorded (a
  scene observer, so a node made deep inside a helper is not missed); nodes the user adds while the job runs in
  the background are not, because nothing is recorded then;
- before an existing node is changed, :meth:`SceneTransaction.keep` saves its name, attributes, node
  references and content (segments, table cells);
- :meth:`SceneTransaction.rollback` removes the recorded nodes (newest first) and restores the kept ones;
  :meth:`SceneTransaction.guard` wraps a job's ``on_finish`` so that this happens whenever the job ends in any
  state but ``succeeded``, including when importing its result fails half-way.

:func:`scene_state` is what "as it was" means: node IDs, classes and names, with a digest of the content of
segmentations and tables; the transaction compares it after a rollback and logs any difference.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import slicer
import vtk
from BratsUNetSlicer import parameters

log = logging.getLogger(__name__)

# Node reference roles BratsUNet sets on nodes it refills; restored with the node (MRML has no call listing the
# roles of a node from Python in every version, so they are named here).
_REFERENCE_ROLES = ("BratsUNetVolumes", "BratsUNetChart",
                    *(f"BratsUNetInput{m}" for m in ("flair", "t1", "t1ce", "t2")))
_REFERENCE_PREFIXES = ("BratsUNetProbability",)


def segmentation_digest(node: Any) -> str:
    """A digest of what a segmentation node holds: each segment's ID, name, colour, label value and binary
    labelmap (voxels, extent and geometry). Display changes (visibility, opacity) do not change it; painting,
    erasing, renaming or removing a segment does."""
    from vtk.util import numpy_support

    digest = hashlib.sha256()
    content = node.GetSegmentation()
    name = content.GetSourceRepresentationName() if hasattr(content, "GetSourceRepresentationName") \
        else content.GetMasterRepresentationName()
    for index in range(content.GetNumberOfSegments()):
        segment_id = content.GetNthSegmentID(index)
        segment = content.GetSegment(segment_id)
        digest.update(f"{segment_id}|{segment.GetName()}|{segment.GetColor()}|{segment.GetLabelValue()}".encode())
        image = segment.GetRepresentation(name)
        if image is None or not hasattr(image, "GetExtent"):
            continue
        digest.update(str(image.GetExtent()).encode())
        matrix = vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(matrix)
        digest.update(str([matrix.GetElement(r, c) for r in range(4) for c in range(4)]).encode())
        scalars = image.GetPointData().GetScalars() if image.GetPointData() is not None else None
        if scalars is not None:
            digest.update(numpy_support.vtk_to_numpy(scalars).tobytes())
    return digest.hexdigest()


def _table_digest(node: Any) -> str:
    table = node.GetTable()
    cells = [[table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]]
    cells += [[node.GetCellText(r, c) for c in range(table.GetNumberOfColumns())]
              for r in range(table.GetNumberOfRows())]
    return hashlib.sha256(repr(cells).encode()).hexdigest()


def scene_state(scene: Any) -> list[tuple[str, str, str, str]]:
    """``(ID, class, name, content digest)`` of every node of ``scene``: equal states are the same scene as a user
    sees it (the digest covers segmentations and tables, the nodes a BratsUNet job fills)."""
    state = []
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        if node.IsA("vtkMRMLSegmentationNode"):
            content = segmentation_digest(node)
        elif node.IsA("vtkMRMLTableNode"):
            content = _table_digest(node)
        else:
            content = ""
        state.append((node.GetID(), node.GetClassName(), node.GetName() or "", content))
    return state


@contextlib.contextmanager
def scratch_nodes(scene: Any) -> Iterator[None]:
    """Remove, when the block ends, every node added to ``scene`` inside it.

    For helpers that work through temporary scene nodes and leave some behind (``slicer.util``'s
    ``arrayFromSegmentBinaryLabelmap`` removes its temporary label map but not that map's display node).
    """
    added: list[str] = []

    def record(caller: Any, event: Any, node: Any) -> None:
        if node is not None and node.GetID():
            added.append(node.GetID())

    record.CallDataType = vtk.VTK_OBJECT
    tag = scene.AddObserver(scene.NodeAddedEvent, record)
    try:
        yield
    finally:
        scene.RemoveObserver(tag)
        for node_id in reversed(added):
            node = scene.GetNodeByID(node_id)
            if node is not None:
                scene.RemoveNode(node)


class _Kept:
    """What :meth:`SceneTransaction.keep` saved of one existing node."""

    def __init__(self, node: Any):
        self.node = node
        self.name = node.GetName()
        self.attributes = {name: node.GetAttribute(name) for name in (node.GetAttributeNames() or ())}
        self.references = {role: node.GetNodeReferenceID(role) for role in self._roles(node)}
        self.content = None
        if node.IsA("vtkMRMLSegmentationNode"):
            self.content = slicer.vtkSegmentation()
            self.content.DeepCopy(node.GetSegmentation())
        elif node.IsA("vtkMRMLTableNode"):
            self.content = vtk.vtkTable()
            self.content.DeepCopy(node.GetTable())
        elif node.IsA("vtkMRMLScalarVolumeNode") and node.GetImageData() is not None:  # a probability map
            self.content = vtk.vtkImageData()
            self.content.DeepCopy(node.GetImageData())
            self.ijk_to_ras = vtk.vtkMatrix4x4()
            node.GetIJKToRASMatrix(self.ijk_to_ras)
        elif node.IsA("vtkMRMLScriptedModuleNode"):
            self.content = {name: node.GetParameter(name) for name in node.GetParameterNames() or ()}

    @staticmethod
    def _roles(node: Any) -> list[str]:
        roles = list(_REFERENCE_ROLES)
        if node.IsA("vtkMRMLScriptedModuleNode"):  # the module's parameter node: its selectors
            roles += list(parameters.NODE_FIELDS)
        roles += [f"{prefix}{region}" for prefix in _REFERENCE_PREFIXES for region in ("WT", "TC", "ET")]
        return roles

    def restore(self) -> None:
        node = self.node
        was_modifying = node.StartModify()
        try:
            node.SetName(self.name)
            for name in node.GetAttributeNames() or ():
                if name not in self.attributes:
                    node.RemoveAttribute(name)
            for name, value in self.attributes.items():
                node.SetAttribute(name, value)
            for role, node_id in self.references.items():
                if node.GetNodeReferenceID(role) != node_id:
                    node.SetNodeReferenceID(role, node_id)
            if node.IsA("vtkMRMLSegmentationNode"):
                node.GetSegmentation().DeepCopy(self.content)
            elif node.IsA("vtkMRMLTableNode"):
                node.GetTable().DeepCopy(self.content)
            elif isinstance(self.content, vtk.vtkImageData):
                node.SetIJKToRASMatrix(self.ijk_to_ras)
                node.SetAndObserveImageData(self.content)
            elif isinstance(self.content, dict):
                for name in node.GetParameterNames() or ():
                    if name not in self.content:
                        node.UnsetParameter(name)
                for name, value in self.content.items():
                    node.SetParameter(name, value)
            node.Modified()
        finally:
            node.EndModify(was_modifying)


class SceneTransaction:
    """Nodes a job added and nodes it changed, so that they can be removed and restored together."""

    def __init__(self, scene: Any):
        self.scene = scene
        self._before = scene_state(scene)
        self._added: list[str] = []
        self._kept: dict[str, _Kept] = {}
        self._undo: list[Callable[[], None]] = []
        self._recording = 0
        self.closed = False

    # -- recording ---------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def recording(self) -> Iterator[SceneTransaction]:
        """Record the nodes added while the block runs; an exception out of the block rolls everything back."""
        def added(caller: Any, event: Any, node: Any) -> None:
            if node is not None and node.GetID():
                self._added.append(node.GetID())

        added.CallDataType = vtk.VTK_OBJECT
        tag = self.scene.AddObserver(self.scene.NodeAddedEvent, added)
        try:
            yield self
        except BaseException:
            self.scene.RemoveObserver(tag)
            tag = None
            self.rollback()
            raise
        finally:
            if tag is not None:
                self.scene.RemoveObserver(tag)

    def keep(self, node: Any) -> Any:
        """Save ``node`` (an existing node the job is about to change) so a rollback restores it; returns it."""
        if node is not None and node.GetID() and node.GetID() not in self._kept and node.GetID() not in self._added:
            self._kept[node.GetID()] = _Kept(node)
        return node

    def on_rollback(self, undo: Callable[[], None]) -> None:
        """Run ``undo`` on rollback (for a change that is not a node's content, e.g. outside the scene)."""
        self._undo.append(undo)

    # -- ending ------------------------------------------------------------------------------------------------

    def commit(self) -> None:
        """The job succeeded: keep every change."""
        self.closed = True

    def rollback(self) -> None:
        """Remove the nodes added, restore the nodes kept, newest change first; then compare with the scene as
        it was (a difference is logged: it means a change was made outside :meth:`recording`)."""
        if self.closed:
            return
        self.closed = True
        for node_id in reversed(self._added):
            node = self.scene.GetNodeByID(node_id)
            if node is not None:
                self.scene.RemoveNode(node)
        for kept in reversed(list(self._kept.values())):
            if self.scene.GetNodeByID(kept.node.GetID()) is kept.node:
                kept.restore()
        for undo in reversed(self._undo):
            undo()
        after = scene_state(self.scene)
        if after != self._before:
            log.warning("BratsUNet: the scene differs from before the job after undoing it: %s",
                        sorted(set(after) ^ set(self._before)))

    def guard(self, on_finish: Callable[[Any], None] | None) -> Callable[[Any], None]:
        """``on_finish`` for a :class:`~BratsUNetSlicer.worker.Job`: runs ``on_finish`` recording its nodes, then
        commits when the job succeeded and rolls back otherwise (cancelled, failed, or ``on_finish`` raised)."""
        def finish(job: Any) -> None:
            if on_finish is not None:
                with self.recording():  # raises after rolling back: the job then fails with the message
                    on_finish(job)
            if job.state == "succeeded":
                self.commit()
            else:
                self.rollback()

        return finish
