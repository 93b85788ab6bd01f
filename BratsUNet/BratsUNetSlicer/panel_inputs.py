"""The panel's case-inputs section: the four input volumes (guessed from their names), the segmentation
options and Apply."""

from __future__ import annotations

from typing import Any

import qt
import vtk
from slicer.i18n import tr as _

DEVICES = ((_("Automatic"), "auto"), (_("CPU"), "cpu"), (_("GPU"), "gpu"))  # device selector: label, value


class InputsSection:
    """Fills the empty input selectors when volumes are loaded; Apply segments (or cancels the running
    segmentation). ``panel`` is the module widget (``ui``, ``logic``, ``parameters``, ``results``)."""

    def __init__(self, panel: Any) -> None:
        self.panel = panel
        self.ui = panel.ui
        for text, value in DEVICES:
            self.ui.deviceComboBox.addItem(text, value)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeAdded(self, caller, event, node) -> None:
        if node.IsA("vtkMRMLScalarVolumeNode"):
            # A loading volume is added before its name is final: look at the names once loading finished.
            qt.QTimer.singleShot(0, self.guessInputs)

    def onShownVolumeChanged(self, caller, event) -> None:
        qt.QTimer.singleShot(0, self.guessInputs)

    def guessInputs(self) -> None:
        """Point the input selectors at the volumes of the case the user is looking at (keeping their own
        choices)."""
        if self.panel.hasParameterNode:
            self.panel.logic.guessInputs(self.panel.parameters)

    def onApplyButton(self) -> None:
        panel = self.panel
        panel.results.startOrCancel("segment", _("Segmentation could not start."),
                                    lambda onEvent: panel.logic.segmentWithParameters(panel.parameters,
                                                                                      onEvent=onEvent))

    def updateButtons(self, parameters: Any, running: set[str]) -> None:
        """Apply segments when the four inputs and a model are chosen (also while a model trains), and cancels a
        running segmentation."""
        ready = all(parameters.inputs.values()) and bool(parameters.modelPath)
        segmenting = "segment" in running
        self.ui.applyButton.text = _("Cancel") if segmenting else _("Apply")
        self.ui.applyButton.enabled = ready or segmenting
        self.ui.applyButton.toolTip = (_("Segment the tumour") if ready
                                       else _("Select the four input volumes and a model"))
