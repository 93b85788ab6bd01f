"""The panel's case-inputs section: the four input volumes (guessed from their names), the segmentation
options and Apply."""

from __future__ import annotations

from typing import Any

import qt
import vtk
from slicer.i18n import tr as _

from BratsUNetLib.hardware.cpu import has_bf16_units

DEVICES = ((_("Automatic"), "auto"), (_("CPU"), "cpu"), (_("GPU"), "gpu"))  # device selector: label, value
# Precision selector: label, value (bratsunet segment --precision; "" is its default), what it costs. The figures
# are benchmarks/README.md's (§1 and §10), measured on an Intel Xeon with AMX, 2 cores, 2026-12-07.
PRECISIONS = (
    (_("Full (fp32)"), "",
     _("The reference arithmetic (mixed precision on a GPU). BraTS 2020 DynUNet on a BraTS-size case: "
       "{fp32} s end to end on 2 CPU cores.")),
    (_("bf16"), "bf16",
     _("OpenVINO in bf16, on CPUs with bf16 units (AVX512-BF16 or AMX) and GPUs: {bf16} s end to end; mean Dice "
       "changed by at most {bf16_dice} per region on held-out phantoms.")),
    (_("int8"), "int8",
     _("OpenVINO in int8, CPU only; the model is quantized once (calibrated on generated phantoms, about a "
       "minute) and kept: {int8} s end to end; mean Dice changed by at most {int8_dice} per region.")),
)
# What benchmarks/README.md measured, for the tooltips above.
MEASURED = {"fp32": "12.0", "bf16": "5.1", "int8": "5.0", "bf16_dice": "0.001", "int8_dice": "0.003"}


class InputsSection:
    """Fills the empty input selectors when volumes are loaded; Apply segments (or cancels the running
    segmentation). ``panel`` is the module widget (``ui``, ``logic``, ``parameters``, ``results``)."""

    def __init__(self, panel: Any) -> None:
        self.panel = panel
        self.ui = panel.ui
        for text, value in DEVICES:
            self.ui.deviceComboBox.addItem(text, value)
        combo = self.ui.precisionComboBox
        for index, (text, value, cost) in enumerate(PRECISIONS):
            combo.addItem(text, value)
            combo.setItemData(index, cost.format(**MEASURED), qt.Qt.ToolTipRole)
            if value == "bf16" and not has_bf16_units():  # refused on this CPU: shown, but not offered
                combo.setItemData(index, _("This CPU has no bf16 units (AVX512-BF16 or AMX): bf16 would be "
                                           "slower than fp32 here."), qt.Qt.ToolTipRole)
                combo.setItemData(index, 0, qt.Qt.UserRole - 1)  # QStandardItemModel: the item's flags, disabled
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
