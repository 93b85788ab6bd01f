"""The smallest stand-ins for what only the Slicer desktop application provides, for tests on slicer-core.

slicer-core (PyPI) is Slicer's real MRML library: scenes, nodes, module logics, storage nodes. It lacks the
desktop pieces a scripted module file touches when it is imported and when its logic runs: the
``slicer.ScriptedLoadableModule`` base classes, ``slicer.i18n``, ``slicer.modules`` (the registered module
logics) and the ``qt`` / ``ctk`` modules. These stand-ins provide only those, never a replacement for an MRML
class: every scene, node and logic under test is slicer-core's own.
"""

from __future__ import annotations

import importlib
import logging
import sys
import types
import unittest
from typing import Any

import slicer

# Module logics registered on the application logic, by the name Slicer gives them.
LOGIC_CLASSES = {
    "Volumes": "vtkSlicerVolumesLogic",
    "Segmentations": "vtkSlicerSegmentationsModuleLogic",
    "SubjectHierarchy": "vtkSlicerSubjectHierarchyModuleLogic",
    "Tables": "vtkSlicerTablesLogic",
    "Plots": "vtkSlicerPlotsLogic",
}


class ScriptedLoadableModule:
    """Like the desktop base class: the module fills ``parent``'s metadata; registers its self-test."""

    def __init__(self, parent: Any):
        self.parent = parent
        self.moduleName = self.__class__.__name__
        parent.title = ""
        parent.categories = []
        parent.dependencies = []
        parent.contributors = []
        parent.helpText = ""
        parent.acknowledgementText = ""
        if not hasattr(slicer, "selfTests"):
            slicer.selfTests = {}
        slicer.selfTests[self.moduleName] = self.runTest

    def runTest(self, msec: int = 100, **kwargs: Any) -> None:
        test_class = getattr(sys.modules[self.__module__], self.moduleName + "Test")
        test_class().runTest(**kwargs)


class ScriptedLoadableModuleWidget:
    """Present so that the module file imports; the widget needs Qt and is not built in these tests."""

    def __init__(self, parent: Any = None):
        raise RuntimeError("The module widget needs the Slicer desktop application (Qt).")


class ScriptedLoadableModuleLogic:
    """The desktop base class's parameter-node handling: one singleton scripted-module node per module."""

    def __init__(self, parent: Any = None):
        self.moduleName = self.__class__.__name__
        self.moduleName = self.moduleName.removesuffix("Logic")
        self.isSingletonParameterNode = True

    def getParameterNode(self) -> Any:
        node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is not None:
            if node.GetAttribute("ModuleName") != self.moduleName:
                node.SetAttribute("ModuleName", self.moduleName)
            return node
        return slicer.mrmlScene.AddNode(self.createParameterNode())

    def createParameterNode(self) -> Any:
        node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)  # CreateNodeByClass hands over a reference that Python also holds
        node.SetSingletonTag(self.moduleName)
        node.SetName(slicer.mrmlScene.GenerateUniqueName(self.moduleName))
        node.SetAttribute("ModuleName", self.moduleName)
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    """The desktop test base class without the message pop-ups."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.messageDelay = 0

    def delayDisplay(self, message: str, msec: int | None = None) -> None:
        logging.getLogger(__name__).info(message)


def install() -> None:
    """Make ``import qt, ctk``, ``slicer.ScriptedLoadableModule``, ``slicer.i18n`` and ``slicer.parameterNodeWrapper``
    importable."""
    for name in ("qt", "ctk"):
        sys.modules.setdefault(name, types.ModuleType(name))
    module = types.ModuleType("slicer.ScriptedLoadableModule")
    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        setattr(module, cls.__name__, cls)
    module.__all__ = [cls.__name__ for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget,
                                               ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest)]
    sys.modules["slicer.ScriptedLoadableModule"] = module
    slicer.ScriptedLoadableModule = module
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    sys.modules["slicer.i18n"] = i18n
    slicer.i18n = i18n
    try:  # a slicer-core that ships it is used as it is
        importlib.import_module("slicer.parameterNodeWrapper")
    except ImportError:
        import parameter_node_wrapper

        sys.modules["slicer.parameterNodeWrapper"] = parameter_node_wrapper
        slicer.parameterNodeWrapper = parameter_node_wrapper


def new_scene() -> tuple[Any, dict[str, Any]]:
    """A scene with the application logic, colour tables and the module logics the module uses.

    Sets ``slicer.mrmlScene`` and ``slicer.modules`` (``slicer.modules.volumes.logic()`` etc.) to them, as in
    the desktop application. Returns the scene and the logics by module name.
    """
    scene = slicer.vtkMRMLScene()
    application_logic = slicer.vtkSlicerApplicationLogic()
    application_logic.SetMRMLScene(scene)
    colors = application_logic.GetColorLogic()
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    application_logic.SetModuleLogic("Colors", colors)
    logics: dict[str, Any] = {"Colors": colors, "Application": application_logic}
    for name, class_name in LOGIC_CLASSES.items():
        logic = getattr(slicer, class_name)()
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(application_logic)
        application_logic.SetModuleLogic(name, logic)
        logics[name] = logic
    slicer.mrmlScene = scene
    slicer.modules = types.SimpleNamespace(**{
        name.lower(): types.SimpleNamespace(logic=(lambda logic=logic: logic)) for name, logic in logics.items()})
    return scene, logics
