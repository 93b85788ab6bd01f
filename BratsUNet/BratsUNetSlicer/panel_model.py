"""The panel's model section: the model selector (remembered across sessions) and the model's card."""

from __future__ import annotations

import logging
import os
from typing import Any

import qt
import slicer
from BratsUNetSlicer import dependencies
from slicer.i18n import tr as _

from BratsUNetLib.errors import BratsUNetError

log = logging.getLogger(__name__)

SETTINGS_KEY = "BratsUNet/Models"  # qt.QSettings entry: "path|config" of each model the user added


class ModelSection:
    """The model selector (the catalogue's models first, then the user's), the "Add model" button and the card of
    the chosen model.

    ``panel`` is the module widget: its ``ui``, ``logic`` (whose ``models`` registry holds the entries) and
    ``parameters`` (the chosen model's path and config).
    """

    def __init__(self, panel: Any) -> None:
        self.panel = panel
        self.ui = panel.ui
        self._cardFor: tuple[str, str] | None = None  # (model, config) whose card is shown
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.addModelButton.connect("clicked(bool)", self.onAddModel)

    @property
    def models(self):
        return self.panel.logic.models

    def restore(self) -> None:
        """Models the user chose in earlier sessions (qt.QSettings), then the selector's items."""
        try:
            self.models.add_catalogue()
        except BratsUNetError as exc:  # a broken $BRATSUNET_MODEL_CATALOGUE must not take the panel with it
            slicer.util.showStatusMessage(str(exc), 10000)
        saved = qt.QSettings().value(SETTINGS_KEY, []) or []
        gone = []
        for item in [saved] if isinstance(saved, str) else saved:  # QSettings gives a str for a single item
            path, _sep, config = str(item).partition("|")
            if os.path.isfile(path):
                self.models.add(path, config)
            else:
                gone.append(path)
        if gone:  # moved or deleted since the last session: said once, then forgotten (refresh saves the list)
            note = _("Models not found any more were taken off the list: {paths}").format(paths=", ".join(gone))
            slicer.util.showStatusMessage(note, 10000)
            log.info("BratsUNet: %s", note)
        self.refresh()

    def refresh(self) -> None:
        """Refill the selector from the registry and remember the user's models for the next session."""
        wasBlocked = self.ui.modelComboBox.blockSignals(True)
        self.ui.modelComboBox.clear()
        for entry, label in self.models.labelled_entries():
            self.ui.modelComboBox.addItem(label, entry.path)
        self.ui.modelComboBox.blockSignals(wasBlocked)
        qt.QSettings().setValue(SETTINGS_KEY,
                                [f"{e.path}|{e.config}" for e in self.models.entries()
                                 if not e.trained_here and e.catalogue is None])
        if self.panel.hasParameterNode:
            self.ui.modelComboBox.setCurrentIndex(self.ui.modelComboBox.findData(self.panel.parameters.modelPath))

    def showParameters(self, parameters: Any) -> None:
        """Select the parameter node's model (registering one a loaded scene names) and schedule its card."""
        if parameters.modelPath and self.models.get(parameters.modelPath) is None:
            self.models.add(parameters.modelPath, parameters.modelConfigPath)  # e.g. from a loaded scene
            self.refresh()
        self.ui.modelComboBox.setCurrentIndex(self.ui.modelComboBox.findData(parameters.modelPath))
        if self._cardFor != (parameters.modelPath, parameters.modelConfigPath):
            # Reading a card imports torch: never during setup, and not before the panel is drawn.
            qt.QTimer.singleShot(0, self.showCard)

    def onAddModel(self) -> None:
        path = qt.QFileDialog.getOpenFileName(slicer.util.mainWindow(), _("Choose a BratsUNet or 3DUnetCNN model"),
                                              "", _("PyTorch checkpoints (*.pth *.pt);;All files (*)"))
        if not path:
            return
        entry = self.models.add(path, self.panel.parameters.modelConfigPath)
        self.refresh()
        self.panel.parameters.modelPath = entry.path

    def onModelChanged(self, index: int) -> None:
        if self.panel.updatingGUI or index < 0:
            return
        parameters = self.panel.parameters
        path = self.ui.modelComboBox.itemData(index)
        parameters.modelPath = path
        entry = self.models.get(path)
        if entry is not None and entry.config and not parameters.modelConfigPath:
            parameters.modelConfigPath = entry.config
        self.showCard()

    def showCard(self) -> None:
        """The chosen model's card (read from its checkpoint), or why there is none."""
        if not self.panel.hasParameterNode:
            return
        parameters = self.panel.parameters
        self._cardFor = (parameters.modelPath, parameters.modelConfigPath)
        early = self.models.card_before_download(parameters.modelPath) if parameters.modelPath else None
        if not parameters.modelPath:
            self.ui.modelCardText.plainText = ""
        elif early is not None:
            self.ui.modelCardText.plainText = early
        elif dependencies.missing_packages():
            self.ui.modelCardText.plainText = _("The model card appears once PyTorch and MONAI are installed.")
        else:
            try:
                self.ui.modelCardText.plainText = self.models.card(parameters.modelPath, parameters.modelConfigPath)
            except BratsUNetError as exc:
                self.ui.modelCardText.plainText = str(exc)
