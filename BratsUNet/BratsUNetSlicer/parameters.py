"""The module's parameter node: what the panel shows, kept in the scene so it survives save and reload.

A ``slicer.parameterNodeWrapper`` over the module's ``vtkMRMLScriptedModuleNode``: inputs and outputs are node
fields (node references, which follow node IDs when a scene is loaded or imported), options are typed fields.
:data:`WIDGETS` binds each field to the widget of ``Resources/UI/BratsUNet.ui`` that edits it. Scenes saved
before the wrapper (parameters named "InputFLAIR", "ModelPath"...) are read by :func:`wrap`.
"""

from __future__ import annotations

from typing import Any

from slicer import (vtkMRMLMarkupsFiducialNode, vtkMRMLNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode,
                    vtkMRMLTableNode)
from slicer.parameterNodeWrapper import parameterNodeWrapper

MODULE_NAME = "BratsUNet"


@parameterNodeWrapper
class BratsUNetParameterNode:
    """Typed view of the module's ``vtkMRMLScriptedModuleNode`` (the node itself is ``.parameterNode``)."""

    # Segmentation inputs, in the order the network takes them.
    flair: vtkMRMLScalarVolumeNode
    t1: vtkMRMLScalarVolumeNode
    t1ce: vtkMRMLScalarVolumeNode
    t2: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    volumesTable: vtkMRMLTableNode

    modelPath: str = ""
    modelConfigPath: str = ""
    device: str = "auto"
    precision: str = ""  # "" (fp32; mixed precision on a GPU), bf16 or int8: bratsunet segment --precision
    nativeResolution: bool = False
    testTimeAugmentation: bool = False
    brats2021Labels: bool = False
    probabilityMaps: bool = False
    show3D: bool = True

    # Refining the output segmentation with clicks (a guided model: the selected one).
    refineAdd: vtkMRMLMarkupsFiducialNode
    refineRemove: vtkMRMLMarkupsFiducialNode
    refineRegion: str = "WT"
    refineOnPlace: bool = True

    # Training.
    trainingFolder: str = ""
    epochs: int = 50
    learningRate: float = 0.001
    batchSize: int = 1
    patchSize: int = 128
    validationCases: int = 1
    networkSize: str = "small"
    fineTune: bool = False
    seed: int = 0
    trainingTable: vtkMRMLTableNode

    @property
    def inputs(self) -> dict[str, Any]:
        """The four input volumes by modality name (values may be None)."""
        return {"flair": self.flair, "t1": self.t1, "t1ce": self.t1ce, "t2": self.t2}

    @property
    def labelScheme(self) -> str:
        return "brats2021" if self.brats2021Labels else "brats2020"


NODE_FIELDS = tuple(name for name in BratsUNetParameterNode.allParameters
                    if issubclass(BratsUNetParameterNode.dataType(name), vtkMRMLNode))
"""The fields that are node references (their reference roles are the field names)."""

# Field -> parameter (or reference role) name in scenes saved before the parameter node wrapper.
EARLIER_NAMES = {
    "flair": "InputFLAIR", "t1": "InputT1", "t1ce": "InputT1ce", "t2": "InputT2",
    "outputSegmentation": "OutputSegmentation", "volumesTable": "VolumesTable", "trainingTable": "TrainingTable",
    "modelPath": "ModelPath", "modelConfigPath": "ModelConfigPath", "device": "Device",
    "nativeResolution": "NativeResolution", "testTimeAugmentation": "TestTimeAugmentation",
    "brats2021Labels": "BraTS2021Labels", "probabilityMaps": "ProbabilityMaps", "trainingFolder": "TrainingFolder",
    "epochs": "Epochs", "learningRate": "LearningRate", "batchSize": "BatchSize", "patchSize": "PatchSize",
    "validationCases": "ValidationCases", "networkSize": "NetworkSize", "fineTune": "FineTune", "seed": "Seed",
}


def wrap(node: Any) -> BratsUNetParameterNode:
    """The typed view of the module's parameter node ``node``; the values of a scene saved before the wrapper
    (see :data:`EARLIER_NAMES`) are moved to their fields first, once."""
    for field, earlier in EARLIER_NAMES.items():
        if node.HasParameter(field):
            continue
        if field in NODE_FIELDS:
            if node.GetNodeReferenceID(earlier):
                node.SetParameter(field, "")
                node.SetNodeReferenceID(field, node.GetNodeReferenceID(earlier))
                node.RemoveNodeReferenceIDs(earlier)
            continue
        text = node.GetParameter(earlier)
        if text:
            kind = BratsUNetParameterNode.dataType(field)
            if kind is bool:
                text = "True" if text == "true" else "False"
            else:
                try:
                    kind(text)
                except ValueError:  # a hand-edited or foreign scene: the default rather than a broken panel
                    text = ""
            if text:
                node.SetParameter(field, text)
        node.UnsetParameter(earlier)
    return BratsUNetParameterNode(node)


# Field name -> object name of the widget that edits it in Resources/UI/BratsUNet.ui.
WIDGETS = {
    "flair": "flairSelector",
    "t1": "t1Selector",
    "t1ce": "t1ceSelector",
    "t2": "t2Selector",
    "outputSegmentation": "outputSegmentationSelector",
    "volumesTable": "volumesTableSelector",
    "modelConfigPath": "modelConfigPathLineEdit",
    "device": "deviceComboBox",
    "precision": "precisionComboBox",
    "nativeResolution": "nativeResolutionCheckBox",
    "testTimeAugmentation": "testTimeAugmentationCheckBox",
    "brats2021Labels": "brats2021LabelsCheckBox",
    "probabilityMaps": "probabilityMapsCheckBox",
    "show3D": "show3DCheckBox",
    "refineAdd": "refineAddSelector",
    "refineRemove": "refineRemoveSelector",
    "refineRegion": "refineRegionComboBox",
    "refineOnPlace": "refineOnPlaceCheckBox",
    "trainingFolder": "trainingFolderLineEdit",
    "epochs": "epochsSpinBox",
    "learningRate": "learningRateSpinBox",
    "batchSize": "batchSizeSpinBox",
    "patchSize": "patchSizeSpinBox",
    "validationCases": "validationCasesSpinBox",
    "networkSize": "networkSizeComboBox",
    "fineTune": "fineTuneCheckBox",
    "seed": "seedSpinBox",
}
