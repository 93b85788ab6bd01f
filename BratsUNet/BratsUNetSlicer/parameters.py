"""The module's parameter node: what the panel shows, kept in the scene so it survives save and reload.

Inputs and outputs are node references (they follow node IDs when a scene is loaded or imported); options are
string parameters converted to and from Python types here, in one place. :data:`WIDGETS` binds each field to the
widget of ``Resources/UI/BratsUNet.ui`` that edits it; the widget copies values both ways through it.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

T = TypeVar("T")

MODULE_NAME = "BratsUNet"


class NodeReference:
    """A field holding a node of the scene through a node reference role (None when unset)."""

    def __init__(self, role: str):
        self.role = role

    def __set_name__(self, owner: type, name: str) -> None:
        self.attribute = name

    def __get__(self, parameters: Parameters | None, owner: type) -> Any:
        if parameters is None:
            return self
        return parameters.node.GetNodeReference(self.role)

    def __set__(self, parameters: Parameters, value: Any) -> None:
        parameters.node.SetNodeReferenceID(self.role, value.GetID() if value is not None else None)


class Value(Generic[T]):
    """A field holding a str, bool, int or float option as a string parameter, with a default."""

    def __init__(self, name: str, kind: type[T], default: T):
        self.name, self.kind, self.default = name, kind, default

    def __set_name__(self, owner: type, name: str) -> None:
        self.attribute = name

    def __get__(self, parameters: Parameters | None, owner: type) -> Any:
        if parameters is None:
            return self
        text = parameters.node.GetParameter(self.name)
        if not text:
            return self.default
        if self.kind is bool:
            return text == "true"
        try:
            return self.kind(text)
        except ValueError:  # a hand-edited or foreign scene: fall back rather than break the panel
            return self.default

    def __set__(self, parameters: Parameters, value: T) -> None:
        if self.kind is bool:
            text = "true" if value else "false"
        else:
            text = str(self.kind(value))
        parameters.node.SetParameter(self.name, text)


class Parameters:
    """Typed view of the module's ``vtkMRMLScriptedModuleNode`` (the node itself is ``.node``)."""

    # Segmentation inputs, in the order the network takes them.
    flair = NodeReference("InputFLAIR")
    t1 = NodeReference("InputT1")
    t1ce = NodeReference("InputT1ce")
    t2 = NodeReference("InputT2")
    outputSegmentation = NodeReference("OutputSegmentation")
    volumesTable = NodeReference("VolumesTable")

    modelPath = Value("ModelPath", str, "")
    modelConfigPath = Value("ModelConfigPath", str, "")
    device = Value("Device", str, "auto")
    nativeResolution = Value("NativeResolution", bool, False)
    testTimeAugmentation = Value("TestTimeAugmentation", bool, False)
    brats2021Labels = Value("BraTS2021Labels", bool, False)
    probabilityMaps = Value("ProbabilityMaps", bool, False)

    # Training.
    trainingFolder = Value("TrainingFolder", str, "")
    epochs = Value("Epochs", int, 50)
    learningRate = Value("LearningRate", float, 0.001)
    batchSize = Value("BatchSize", int, 1)
    patchSize = Value("PatchSize", int, 128)
    validationCases = Value("ValidationCases", int, 1)
    networkSize = Value("NetworkSize", str, "small")
    fineTune = Value("FineTune", bool, False)
    seed = Value("Seed", int, 0)
    trainingTable = NodeReference("TrainingTable")

    def __init__(self, node: Any):
        self.node = node

    @property
    def inputs(self) -> dict[str, Any]:
        """The four input volumes by modality name (values may be None)."""
        return {"flair": self.flair, "t1": self.t1, "t1ce": self.t1ce, "t2": self.t2}

    @property
    def labelScheme(self) -> str:
        return "brats2021" if self.brats2021Labels else "brats2020"


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
    "nativeResolution": "nativeResolutionCheckBox",
    "testTimeAugmentation": "testTimeAugmentationCheckBox",
    "brats2021Labels": "brats2021LabelsCheckBox",
    "probabilityMaps": "probabilityMapsCheckBox",
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
