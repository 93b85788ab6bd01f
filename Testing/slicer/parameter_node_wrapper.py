"""A stand-in for Slicer's ``slicer.parameterNodeWrapper`` (Slicer >= 5.4), for tests on slicer-core.

slicer-core lacks the package (it imports ``qt`` for its GUI connectors). This is the subset BratsUNet uses,
storing values as Slicer's serializers do so that a scene saved here reads back in the desktop application:
each field ``name`` is the string parameter ``name`` of the real ``vtkMRMLScriptedModuleNode`` (str as is,
bool as "True"/"False", int and float as ``str(value)``); a node field is the node reference role ``name``
plus an empty parameter ``name`` marking it as set. Writes are validated as Slicer validates them: None is
refused for str, bool and numbers, and a value of the wrong type raises ``TypeError`` (a node field takes
None or a node of its class). Reading and writing go straight to the node (Slicer caches reads; the values are
the same). GUI connection (``connectGui``) is not provided: there is no Qt here.
"""

from __future__ import annotations

import typing
from typing import Any

import slicer

__all__ = ["parameterNodeWrapper", "isParameterNodeWrapper"]


class _Field:
    """One typed field: how Slicer's serializer for its type reads, writes and validates it."""

    def __init__(self, name: str, type_: type, default: Any):
        self.name, self.type = name, type_
        self.is_node = isinstance(type_, type) and issubclass(type_, slicer.vtkMRMLNode)
        if not self.is_node and type_ not in (str, bool, int, float):
            raise Exception(f"Unable to create serializer for type: {type_}")
        self.default = default if default is not _NO_DEFAULT else {str: "", bool: False, int: 0, float: 0}.get(
            type_)

    def validate(self, value: Any) -> None:
        if value is None:
            if not self.is_node:
                raise ValueError("Value must not be None")
            return
        allowed = (int, float) if self.type is float else self.type
        if not isinstance(value, allowed):
            raise TypeError(f"Value must be of type '{self.type}', is type '{type(value)}' value '{value}'")

    def isIn(self, node: Any) -> bool:
        return bool(node.HasParameter(self.name))

    def write(self, node: Any, value: Any) -> None:
        self.validate(value)
        if self.is_node:
            node.SetParameter(self.name, "")
            node.SetNodeReferenceID(self.name, value.GetID() if value is not None else None)
        elif self.type is bool:
            node.SetParameter(self.name, "True" if value else "False")
        else:
            node.SetParameter(self.name, str(value))

    def read(self, node: Any) -> Any:
        if not self.isIn(node):
            self.write(node, self.default)
        if self.is_node:
            return node.GetNodeReference(self.name)
        text = node.GetParameter(self.name)
        if self.type is bool:
            return text == "True"
        return self.type(text)


_NO_DEFAULT = object()
_RESERVED = ("allParameters", "_is_parameter_node_wrapper", "default", "dataType", "getValue", "setValue",
             "StartModify", "EndModify", "AddObserver", "RemoveObserver", "Modified")


def _property(field: _Field) -> property:
    return property(lambda self: field.read(self.parameterNode), lambda self, value: field.write(self.parameterNode,
                                                                                                  value))


def _processClass(classtype: type) -> type:
    fields: dict[str, _Field] = {}
    for name, type_ in typing.get_type_hints(classtype).items():
        fields[name] = _Field(name, type_, getattr(classtype, name, _NO_DEFAULT))
        setattr(classtype, name, _property(fields[name]))
    for name in _RESERVED:
        if hasattr(classtype, name):
            raise ValueError(f"Cannot use reserved name '{name}' in a parameterNodeWrapper")

    def __init__(self, parameterNode: Any) -> None:
        self.parameterNode = parameterNode
        for field in fields.values():
            if not field.isIn(parameterNode):
                field.write(parameterNode, field.default)

    def getValue(self, name: str) -> Any:
        return fields[name].read(self.parameterNode)

    def setValue(self, name: str, value: Any) -> None:
        fields[name].write(self.parameterNode, value)

    classtype.__init__ = __init__
    classtype.allParameters = fields
    classtype._is_parameter_node_wrapper = True
    classtype.dataType = staticmethod(lambda name: fields[name].type)
    classtype.getValue, classtype.setValue = getValue, setValue
    classtype.StartModify = lambda self: self.parameterNode.StartModify()
    classtype.EndModify = lambda self, wasModified: self.parameterNode.EndModify(wasModified)
    classtype.AddObserver = lambda self, event, callback, priority=0.0: self.parameterNode.AddObserver(
        event, callback, priority)
    classtype.RemoveObserver = lambda self, tag: self.parameterNode.RemoveObserver(tag)
    classtype.Modified = lambda self: self.parameterNode.Modified()
    return classtype


def parameterNodeWrapper(classtype: type | None = None):
    """Class decorator: typed properties stored in the wrapped ``vtkMRMLScriptedModuleNode``."""
    if classtype is None:
        return _processClass
    return _processClass(classtype)


def isParameterNodeWrapper(classOrObj: Any) -> bool:
    return getattr(classOrObj, "_is_parameter_node_wrapper", False)
