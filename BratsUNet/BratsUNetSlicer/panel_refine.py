"""The panel's refine section: two Markups point lists (points in a region, points not in it), the region, and
Refine; with "Refine as points are placed" every point placed or moved refines the output segmentation."""

from __future__ import annotations

from typing import Any

import slicer
from slicer.i18n import tr as _
from slicer.util import VTKObservationMixin

from BratsUNetSlicer import refinement

# BratsUNetLib.data.labels names the regions too, but it needs scipy, which a fresh Slicer installs only later.
REGION_CHOICES = ((_("Whole tumor (WT)"), "WT"), (_("Tumor core (TC)"), "TC"), (_("Enhancing tumor (ET)"), "ET"))
# A point placed, or moved and dropped: what a click means here (not every step of a drag).
POINT_EVENTS = (slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent)


class RefineSection(VTKObservationMixin):
    """``panel`` is the module widget (``ui``, ``logic``, ``parameters``, ``results``, ``updatingGUI``)."""

    def __init__(self, panel: Any) -> None:
        VTKObservationMixin.__init__(self)
        self.panel = panel
        self.ui = panel.ui
        for text, value in REGION_CHOICES:
            self.ui.refineRegionComboBox.addItem(text, value)
        self.ui.refineButton.connect("clicked(bool)", self.onRefine)
        self._observed: list[Any] = []

    def onRefine(self) -> None:
        """Refine the output segmentation (the button is off while the segmentation worker is busy)."""
        panel = self.panel
        panel.results.startOrCancel("segment", _("Refining could not start."),
                                    lambda onEvent: panel.logic.refineWithParameters(panel.parameters,
                                                                                     onEvent=onEvent))

    def onPointPlaced(self, caller=None, event=None) -> None:
        """A point was placed or moved: it takes the selected region (unless it has one already); refine at once when asked to and nothing is segmenting (a click while a
        refinement runs waits for the next one rather than cancelling it)."""
        parameters = self.panel.parameters
        if self.panel.hasParameterNode and caller is not None and hasattr(caller, "GetNumberOfControlPoints"):
            refinement.stamp_region(caller, parameters.refineRegion)  # the point keeps the region it is placed for
        if (self.panel.hasParameterNode and parameters.refineOnPlace and parameters.outputSegmentation is not None
                and "segment" not in self.panel.results.runningKinds):
            self.onRefine()

    def follow(self, parameters: Any) -> None:
        """Observe the point lists the parameter node names (called when it changes)."""
        wanted = [node for node in (parameters.refineAdd, parameters.refineRemove) if node is not None]
        if wanted == self._observed:
            return
        for node in self._observed:
            for event in POINT_EVENTS:
                self.removeObserver(node, event, self.onPointPlaced)
        for node in wanted:
            for event in POINT_EVENTS:
                self.addObserver(node, event, self.onPointPlaced)
        self._observed = wanted

    def updateButtons(self, parameters: Any, running: set[str]) -> None:
        self.ui.refineButton.enabled = (parameters.outputSegmentation is not None and bool(parameters.modelPath)
                                        and "segment" not in running)

    def stop(self) -> None:
        self.removeObservers()
        self._observed = []
