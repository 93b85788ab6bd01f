"""Render the BratsUNet panel from its Qt Designer file into ``docs/panel.png``, the picture in the README.

The panel is ``BratsUNet/Resources/UI/BratsUNet.ui`` loaded with PySide6's ``QUiLoader`` on Qt's offscreen
platform (no display needed) and filled as a new user sees it at step 3 of the README's first use: the sample
case's four volumes in the inputs and the catalogue's MONAI model chosen, with its card. The picture records the
sha256 of the .ui file it was rendered from (PNG text ``ui-sha256``); ``Testing/test_docs.py`` fails when the .ui
changes and the picture was not rendered again.

Run it after editing the .ui (the test says so), with a Python that has PySide6, e.g. a throwaway venv::

    python3 -m venv /tmp/pyside && /tmp/pyside/bin/pip install PySide6-Essentials
    /tmp/pyside/bin/python docs/render_panel.py [--output docs/panel.png]

It needs neither Slicer nor torch: the model's title and card come from the library's catalogue.
"""

from __future__ import annotations

import argparse
import enum
import hashlib
import os
import sys
import warnings
from pathlib import Path

from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets
from PySide6.QtCore import Property, QFlag, Signal, Slot

ROOT = Path(__file__).resolve().parents[1]
UI_FILE = ROOT / "BratsUNet" / "Resources" / "UI" / "BratsUNet.ui"
WIDTH = 440  # a typical width of Slicer's module panel, in pixels
CASE = "BraTS20_Sample_001"  # the sample data's case (BratsUNetSlicer.sample_data.CASE_ID)


# Stand-ins for the CTK and qMRML widgets the .ui uses. The real ones are C++ widgets that exist only inside
# Slicer, so a plain QUiLoader cannot make them; these draw the same kind of control and accept the properties
# (and the scene connections) the .ui sets, so that the panel loads without a warning. The class names must be
# the .ui's: QUiLoader finds a registered class by its name.

def _kept(name: str, kind: str | type, default: object = None) -> Property:
    """A Qt property that only keeps what the .ui sets (what it does in Slicer does not show in a picture)."""
    return Property(kind, lambda self: getattr(self, f"_{name}", default),
                    lambda self, value: setattr(self, f"_{name}", value))


class ctkCollapsibleButton(QtWidgets.QGroupBox):
    """A section: a checkable group box titled with its ``text``; unchecked, it is collapsed to its title."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setCheckable(True)
        self.toggled.connect(self.fold)
        self._margins: QtCore.QMargins | None = None  # its layout's, while collapsed

    def fold(self) -> None:
        """Show the contents when expanded, hide them when collapsed (again once the loader added them)."""
        expanded = self.isChecked()
        for child in self.findChildren(QtWidgets.QWidget, options=QtCore.Qt.FindChildOption.FindDirectChildrenOnly):
            child.setVisible(expanded)
        layout = self.layout()
        if layout is not None:  # collapsed: the title alone, without an empty frame under it
            if not expanded and self._margins is None:
                self._margins = layout.contentsMargins()
                layout.setContentsMargins(0, 0, 0, 0)
            elif expanded and self._margins is not None:
                layout.setContentsMargins(self._margins)
                self._margins = None

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:
        """A collapsed section is its check box and title, without the frame of the contents."""
        painter = QtWidgets.QStylePainter(self)
        option = QtWidgets.QStyleOptionGroupBox()
        self.initStyleOption(option)
        if not self.isChecked():
            option.subControls &= ~QtWidgets.QStyle.SubControl.SC_GroupBoxFrame
        painter.drawComplexControl(QtWidgets.QStyle.ComplexControl.CC_GroupBox, option)
        painter.end()

    def _setCollapsed(self, collapsed: bool) -> None:
        self.setChecked(not collapsed)
        self.fold()

    text = Property(str, QtWidgets.QGroupBox.title, QtWidgets.QGroupBox.setTitle)
    collapsed = Property(bool, lambda self: not self.isChecked(), _setCollapsed)


class qMRMLNodeComboBox(QtWidgets.QComboBox):
    """A node selector: a combo box of node names."""

    @Slot("vtkMRMLScene*")
    def setMRMLScene(self, scene: object) -> None:
        pass

    nodeTypes = _kept("nodeTypes", "QStringList", [])
    noneDisplay = _kept("noneDisplay", str, "None")
    showChildNodeTypes = _kept("showChildNodeTypes", bool, True)
    noneEnabled = _kept("noneEnabled", bool, False)
    addEnabled = _kept("addEnabled", bool, True)
    removeEnabled = _kept("removeEnabled", bool, True)
    renameEnabled = _kept("renameEnabled", bool, False)


with warnings.catch_warnings():
    # PySide builds the class's meta-object once before the Filters type is registered (and warns), then again
    # with it: the property is there, as a flags type, which the .ui's "Files|Readable" needs.
    warnings.filterwarnings("ignore", "libpyside: QMetaObjectBuilder: Failed to add property", RuntimeWarning)

    class ctkPathLineEdit(QtWidgets.QWidget):
        """A path field: a line edit with a "..." browse button."""

        @QFlag
        class Filters(enum.Flag):
            Dirs = 0x001
            Files = 0x002
            Readable = 0x010
            Writable = 0x020

        def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
            super().__init__(parent)
            layout = QtWidgets.QHBoxLayout(self)
            layout.setContentsMargins(0, 0, 0, 0)
            layout.addWidget(QtWidgets.QLineEdit(self))
            layout.addWidget(QtWidgets.QToolButton(self, text="..."))

        filters = _kept("filters", "ctkPathLineEdit::Filters")
        nameFilters = _kept("nameFilters", "QStringList", [])


class qMRMLTableView(QtWidgets.QTableView):
    """A table node's view: an empty table until a result fills its node."""

    @Slot("vtkMRMLScene*")
    def setMRMLScene(self, scene: object) -> None:
        pass


class qMRMLWidget(QtWidgets.QWidget):
    """The module panel's base: a widget that tells its node selectors the scene."""

    mrmlSceneChanged = Signal("vtkMRMLScene*")


def load_panel() -> QtWidgets.QWidget:
    """The panel as the .ui makes it; SystemExit with Qt's messages if loading it warned of anything (a class or
    property the stand-ins lack: add it above)."""
    messages = []
    QtCore.qInstallMessageHandler(lambda kind, context, text: messages.append(text))
    loader = QtUiTools.QUiLoader()
    for widget_class in (ctkCollapsibleButton, qMRMLNodeComboBox, ctkPathLineEdit, qMRMLTableView,
                         qMRMLWidget):
        loader.registerCustomWidget(widget_class)
    panel = loader.load(str(UI_FILE))
    QtCore.qInstallMessageHandler(None)
    if panel is None or messages:
        raise SystemExit(f"Loading {UI_FILE} went wrong: {loader.errorString()}\n" + "\n".join(messages))
    for section in panel.findChildren(ctkCollapsibleButton):
        section.fold()
    return panel


def fill(panel: QtWidgets.QWidget) -> None:
    """What the panel shows at the README's first-use step 3 (before Apply, so the status line is empty)."""
    sys.path[:0] = [str(ROOT), str(ROOT / "BratsUNet")]  # the library, and the panel's model list (pure Python)
    from BratsUNetSlicer import dependencies
    from BratsUNetSlicer.models import ModelRegistry

    def find(kind: type, name: str):
        return panel.findChild(kind, name)

    for modality in ("flair", "t1", "t1ce", "t2"):
        find(QtWidgets.QComboBox, f"{modality}Selector").addItem(f"{CASE}_{modality}")
    for name in ("outputSegmentationSelector", "volumesTableSelector"):
        selector = find(QtWidgets.QComboBox, name)
        selector.addItem(selector.noneDisplay)
    models = ModelRegistry()
    models.add_catalogue(ROOT / "BratsUNetLib" / "models" / "catalogue.json")
    entry, label = models.labelled_entries()[0]
    model = find(QtWidgets.QComboBox, "modelComboBox")
    model.addItem(label)  # elided to the selector's width, as Qt draws it in Slicer (lay_out)
    find(QtWidgets.QPlainTextEdit, "modelCardText").setPlainText(models.card_before_download(entry.path))
    find(QtWidgets.QComboBox, "deviceComboBox").addItems(["Automatic", "CPU", "GPU"])  # panel_inputs.DEVICES
    find(QtWidgets.QComboBox, "precisionComboBox").addItems(["Full (fp32)", "bf16", "int8"])  # panel_inputs.PRECISIONS
    # A fresh Slicer: nothing installed yet (panel_dependencies), which the first Apply does.
    find(QtWidgets.QLabel, "deviceInfoLabel").setText(
        "Not installed yet: " + ", ".join(["torch", *dependencies.PIP_REQUIREMENTS]))
    find(QtWidgets.QPushButton, "applyButton").setEnabled(True)  # four inputs and a model: ready
    find(QtWidgets.QTableView, "volumesTableView").setVisible(False)  # the panel shows it once there is a result


def lay_out(panel: QtWidgets.QWidget) -> None:
    """The panel at its width and as tall as it asks, laid out, and the model's label elided to the room it has."""
    panel.resize(WIDTH, panel.sizeHint().height())
    panel.grab()  # lays it out: a widget never shown gets its children's geometry when first drawn
    model = panel.findChild(QtWidgets.QComboBox, "modelComboBox")
    option = QtWidgets.QStyleOptionComboBox()
    model.initStyleOption(option)
    style = model.style()
    room = style.subControlRect(style.ComplexControl.CC_ComboBox, option, style.SubControl.SC_ComboBoxEditField, model)
    elided = model.fontMetrics().elidedText(model.itemText(0), QtCore.Qt.TextElideMode.ElideRight, room.width() - 2)
    model.setItemText(0, elided)  # (the style draws the text 1 px in from either side)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "panel.png", help="default: %(default)s")
    output = parser.parse_args(argv).output
    # Before the QApplication: it picks the platform when it is created.
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    os.environ["BRATSUNET_MODELS_DIR"] = str(ROOT / "docs" / "no-models")  # so no model shows as downloaded here
    _app = QtWidgets.QApplication([])
    panel = load_panel()
    fill(panel)
    lay_out(panel)
    image = panel.grab().toImage()
    if image.width() != WIDTH:
        raise SystemExit(f"The panel is {image.width()} px wide, wider than {WIDTH}: a widget's contents are too wide.")
    image.setText("ui-sha256", hashlib.sha256(UI_FILE.read_bytes()).hexdigest())
    temporary = output.with_name(output.name + ".tmp")
    if not image.save(str(temporary), "PNG"):
        raise SystemExit(f"Could not write {temporary}.")
    os.replace(temporary, output)
    print(output)


if __name__ == "__main__":
    main()
