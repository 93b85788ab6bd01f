"""The panel's training section: the cases found in the scene, adding a corrected result to them, Train and
Resume (from scratch, or fine-tuning the selected model)."""

from __future__ import annotations

from typing import Any

import slicer
from BratsUNetSlicer import cases
from slicer.i18n import tr as _

NETWORK_SIZES = ((_("Small (fast, for a few cases)"), "small"), (_("BraTS 2020 (3DUnetCNN)"), "brats"))


class TrainingSection:
    """Train and Resume (each also cancels a running training; with "Fine-tune" ticked they fine-tune the
    selected model, the panel's one fine-tuning path), "Add the corrected segmentation to the cases" and the list
    of training cases with their status. ``panel`` is the module widget (``ui``, ``logic``, ``parameters``, ``results``,
    ``dependencies``)."""

    def __init__(self, panel: Any) -> None:
        self.panel = panel
        self.ui = panel.ui
        for text, value in NETWORK_SIZES:
            self.ui.networkSizeComboBox.addItem(text, value)
        self.ui.refreshCasesButton.connect("clicked(bool)", self.onRefreshCases)
        self.ui.trainButton.connect("clicked(bool)", lambda: self.onTrainButton(resume=False))
        self.ui.resumeButton.connect("clicked(bool)", lambda: self.onTrainButton(resume=True))
        self.ui.addCorrectedCaseButton.connect("clicked(bool)", self.onAddCorrectedCase)

    def onTrainButton(self, resume: bool) -> None:
        panel = self.panel
        panel.results.startOrCancel("train", _("Training could not start."),
                                    lambda onEvent: panel.logic.trainWithParameters(panel.parameters, resume=resume,
                                                                                    onEvent=onEvent))

    def onAddCorrectedCase(self) -> None:
        """The correction becomes its case's label; Train then fine-tunes the model that made it (one path)."""
        panel = self.panel
        with slicer.util.tryWithErrorDisplay(_("The segmentation could not be added to the cases."),
                                             waitCursor=True):
            case = panel.logic.addCorrectedCaseWithParameters(panel.parameters)
            panel.models.refresh()
            self.ui.trainingCollapsibleButton.collapsed = False
            panel.results.showStatus("train", _("{case} added to the cases: press Train to fine-tune the selected "
                                                "model on them.").format(case=case.name))
        self.onRefreshCases()

    def onRefreshCases(self) -> None:
        found = cases.discover_cases(slicer.mrmlScene)
        self.ui.casesText.plainText = cases.describe_cases(found) or _("No cases found: load FLAIR, T1, T1ce and "
                                                                        "T2 volumes and a label per case.")

    def updateButtons(self, parameters: Any, running: set[str]) -> None:
        """Train cancels a running training; a segmentation may run beside it. Fine-tuning on the output
        segmentation waits until no segmentation is filling it."""
        training = "train" in running
        self.ui.trainButton.text = _("Cancel") if training else _("Train")
        self.ui.trainButton.enabled = True
        self.ui.resumeButton.enabled = not training
        self.ui.addCorrectedCaseButton.enabled = (not running and parameters.outputSegmentation is not None)
        # A model is fine-tuned with its own network (BratsUNetSlicer.training.fine_tuning_config_of): the network
        # choice is for training from scratch only.
        self.ui.networkSizeLabel.visible = self.ui.networkSizeComboBox.visible = not parameters.fineTune
