"""The panel's widgets and the parameter node, kept equal both ways.

:data:`~BratsUNetSlicer.parameters.WIDGETS` names the widget of ``Resources/UI/BratsUNet.ui`` that edits each
field; this file knows how each kind of widget reads, writes and signals its value. Needs Qt (PythonQt idioms):
used only by the panel, never by the logic.
"""

from __future__ import annotations

from typing import Any, Callable

from BratsUNetSlicer.parameters import NODE_FIELDS, WIDGETS, BratsUNetParameterNode


class ParameterBinding:
    """Copies every field of :class:`BratsUNetParameterNode` to its widget and back; ``updating`` is True while it
    writes the widgets, so that their change signals do not write the same values back."""

    def __init__(self, ui: Any, onWidgetChanged: Callable[..., None]) -> None:
        self.ui = ui
        self.updating = False
        for field, name in WIDGETS.items():
            self._connect(getattr(ui, name), field, onWidgetChanged)

    @staticmethod
    def _connect(widget: Any, field: str, slot: Callable[..., None]) -> None:
        kind = BratsUNetParameterNode.dataType(field)
        if field in NODE_FIELDS:
            widget.connect("currentNodeChanged(vtkMRMLNode*)", slot)
        elif kind is bool:
            widget.connect("toggled(bool)", slot)
        elif kind in (int, float):
            widget.connect("valueChanged(double)" if kind is float else "valueChanged(int)", slot)
        elif hasattr(widget, "currentPath"):
            widget.connect("currentPathChanged(QString)", slot)
        else:
            widget.connect("currentIndexChanged(int)", slot)

    def toWidgets(self, parameters: BratsUNetParameterNode) -> None:
        """Show every field's value in its widget."""
        for field, name in WIDGETS.items():
            self._setWidgetValue(getattr(self.ui, name), field, getattr(parameters, field))

    def fromWidgets(self, parameters: BratsUNetParameterNode) -> None:
        """Store every widget's value in its field (one Modified event: the caller wraps it in StartModify)."""
        for field, name in WIDGETS.items():
            setattr(parameters, field, self._widgetValue(getattr(self.ui, name), field))

    @staticmethod
    def _setWidgetValue(widget: Any, field: str, value: Any) -> None:
        kind = BratsUNetParameterNode.dataType(field)
        if field in NODE_FIELDS:
            widget.setCurrentNode(value)
        elif kind is bool:
            widget.checked = value
        elif kind in (int, float):
            widget.value = value
        elif hasattr(widget, "currentPath"):
            widget.currentPath = value
        else:
            widget.setCurrentIndex(max(0, widget.findData(value)))

    @staticmethod
    def _widgetValue(widget: Any, field: str) -> Any:
        kind = BratsUNetParameterNode.dataType(field)
        if field in NODE_FIELDS:
            return widget.currentNode()
        if kind is bool:
            return widget.checked
        if kind in (int, float):
            return kind(widget.value)  # a spin box's value is a float in PythonQt; an int field refuses it
        if hasattr(widget, "currentPath"):
            return widget.currentPath
        return widget.currentData
