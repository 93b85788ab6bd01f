"""The module file as Slicer loads it: light imports, metadata, the panel's .ui, packaging, the parameter node."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
MODULE_DIR = HERE.parents[1] / "BratsUNet"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "BratsUNet.ui"


def test_module_imports_without_torch_or_monai():
    """The panel must open before torch and MONAI are installed: importing the module may not import them."""
    code = (
        f"import sys; sys.path[:0] = [{str(HERE)!r}, {str(MODULE_DIR)!r}]\n"
        "import standins; standins.install(); standins.new_scene()\n"
        "import BratsUNet\n"
        "print(sorted(m for m in ('torch', 'monai', 'nibabel') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_module_metadata_and_self_test_registration(module):
    import slicer

    parent = type("Parent", (), {})()
    module.BratsUNet(parent)
    assert parent.title == "BratsUNet"
    assert parent.categories == ["Segmentation"]
    assert "FLAIR" in parent.helpText and "segment(" in parent.helpText
    assert "BratsUNet" in slicer.selfTests


def _ui_widget_names() -> dict[str, str]:
    root = ET.parse(UI_FILE).getroot()
    return {widget.get("name"): widget.get("class") for widget in root.iter("widget")}


def test_ui_file_names_every_widget_the_code_uses():
    from BratsUNetSlicer.parameters import WIDGETS

    names = _ui_widget_names()
    # The widget and the panel's sections (BratsUNetSlicer/panel_*.py) reach the .ui's widgets as ``self.ui.<name>``.
    sources = [MODULE_DIR / "BratsUNet.py", *sorted((MODULE_DIR / "BratsUNetSlicer").glob("panel_*.py"))]
    code = "\n".join(path.read_text() for path in sources)
    used = set(re.findall(r"self\.ui\.(\w+)", code)) | set(WIDGETS.values())
    assert used, "the module uses no widget?"
    assert sorted(used - set(names)) == []
    assert names["BratsUNet"] == "qMRMLWidget"
    for field, name in WIDGETS.items():
        if field in ("flair", "t1", "t1ce", "t2", "outputSegmentation", "volumesTable"):
            assert names[name] == "qMRMLNodeComboBox", name


def test_ui_node_selectors_get_the_scene():
    root = ET.parse(UI_FILE).getroot()
    receivers = {c.findtext("receiver") for c in root.iter("connection") if c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    selectors = {name for name, cls in _ui_widget_names().items() if cls in ("qMRMLNodeComboBox", "qMRMLTableView")}
    assert selectors and selectors <= receivers


CONTROLS = ("QCheckBox", "QComboBox", "QSpinBox", "QDoubleSpinBox", "QPushButton", "qMRMLNodeComboBox",
            "ctkPathLineEdit", "qMRMLTableView")


def test_every_control_of_the_panel_has_a_tooltip_saying_what_it_does():
    root = ET.parse(UI_FILE).getroot()
    missing = [widget.get("name") for widget in root.iter("widget") if widget.get("class") in CONTROLS
               and not any(p.get("name") == "toolTip" and (p.findtext("string") or "").strip()
                           for p in widget.findall("property"))]
    assert missing == []
    options = {widget.get("name"): widget for widget in root.iter("widget")}

    def tooltip(name):
        return next(p.findtext("string") for p in options[name].findall("property") if p.get("name") == "toolTip")

    # The options that create or change something in the scene say what.
    assert "scalar volume per region" in tooltip("probabilityMapsCheckBox")
    assert "label 3" in tooltip("brats2021LabelsCheckBox")
    assert "3D view" in tooltip("show3DCheckBox")


def test_every_module_python_file_is_listed_in_cmake():
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text().replace("${MODULE_NAME}", "BratsUNet")
    listed = set(re.findall(r"^\s*([\w/]+\.py)\s*$", cmake, flags=re.MULTILINE))
    present = {str(p.relative_to(MODULE_DIR)) for p in MODULE_DIR.rglob("*.py") if "__pycache__" not in p.parts}
    assert present == listed


def test_icon_is_a_128_pixel_png():
    data = (MODULE_DIR / "Resources" / "Icons" / "BratsUNet.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (128, 128)


def test_parameter_node_survives_saving_and_reloading_the_scene(module, scene, phantom_cases, tmp_path):
    import slicer
    from BratsUNetSlicer import scene_io

    case = phantom_cases["BraTS20_Training_001"]
    volumes = {m: scene_io.load_volume(case[m], f"BraTS20_Training_001_{m}") for m in scene_io.MODALITIES}
    logic = module.BratsUNetLogic()
    parameters = logic.getParameters()
    logic.guessInputs(parameters)
    parameters.modelPath = "/models/brats model.pth"
    parameters.device = "cpu"
    parameters.nativeResolution = True
    parameters.brats2021Labels = True
    parameters.epochs = 7
    parameters.learningRate = 0.0005
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "volumes")
    parameters.volumesTable = table

    for node in volumes.values():  # the volumes are saved with the scene, as Slicer's "Save" does
        node.AddDefaultStorageNode()
        node.GetStorageNode().SetFileName(str(tmp_path / f"{node.GetName()}.nrrd"))
        assert node.GetStorageNode().WriteData(node)
    scene.SetRootDirectory(str(tmp_path))
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Commit()

    scene.Clear(1)
    assert scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode") == 0
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Connect()

    reloaded = module.BratsUNetLogic().getParameters()
    assert reloaded.flair.GetName() == "BraTS20_Training_001_flair"
    assert reloaded.t1ce.GetName() == "BraTS20_Training_001_t1ce"
    assert reloaded.flair.GetImageData().GetDimensions() == (32, 32, 32)
    assert reloaded.volumesTable.GetName() == "volumes"
    assert reloaded.modelPath == "/models/brats model.pth"
    assert (reloaded.device, reloaded.nativeResolution, reloaded.brats2021Labels) == ("cpu", True, True)
    assert (reloaded.epochs, reloaded.learningRate) == (7, 0.0005)
    assert reloaded.testTimeAugmentation is False and reloaded.labelScheme == "brats2021"
    assert slicer.mrmlScene is scene


def test_a_scene_saved_before_the_parameter_node_wrapper_keeps_its_choices(module, scene):
    """Scenes saved by earlier versions named the parameters "InputFLAIR", "ModelPath"... with "true"/"false"."""
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "BraTS20_Training_001_flair")
    node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "BratsUNet")
    node.SetSingletonTag("BratsUNet")
    node.SetAttribute("ModuleName", "BratsUNet")
    node.SetNodeReferenceID("InputFLAIR", volume.GetID())
    for name, text in (("ModelPath", "/models/m.pth"), ("BraTS2021Labels", "true"), ("Epochs", "7"),
                       ("LearningRate", "not a number")):
        node.SetParameter(name, text)

    parameters = module.BratsUNetLogic().getParameters()
    assert parameters.flair is volume and parameters.t1 is None
    assert (parameters.modelPath, parameters.brats2021Labels, parameters.epochs) == ("/models/m.pth", True, 7)
    assert parameters.learningRate == 0.001  # a value that does not read falls back to the default
    with pytest.raises(TypeError):  # a typed field refuses the wrong kind of node, as in Slicer
        parameters.flair = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "outline")


@pytest.mark.parametrize("name, expected", [
    ("BraTS20_Training_001_flair", ("BraTS20_Training_001", "flair")),
    ("BraTS2021_00012_T1CE", ("BraTS2021_00012", "t1ce")),
    ("BraTS-GLI-00000-000-t2f", ("BraTS-GLI-00000-000", "flair")),
    ("BraTS-GLI-00000-000-t1n", ("BraTS-GLI-00000-000", "t1")),
    ("BraTS-GLI-00000-000-t1c", ("BraTS-GLI-00000-000", "t1ce")),
    ("BraTS-GLI-00000-000-t2w.nii.gz", ("BraTS-GLI-00000-000", "t2")),
    ("BraTS20_Training_001_t1_1", ("BraTS20_Training_001", "t1")),
    ("BraTS20_Training_001_seg", ("BraTS20_Training_001", "label")),
    ("FLAIR", ("", "flair")),
    ("patient 7 T2", ("patient 7", "t2")),
    ("brainflair", ("brainflair", None)),
    ("BraTS20_Training_001", ("BraTS20_Training_001", None)),
])
def test_node_names_give_case_and_modality(name, expected):
    from BratsUNetSlicer.scene_io import split_name

    assert split_name(name) == expected


def test_inputs_are_filled_from_node_names_of_the_most_complete_case(module, scene):
    import numpy as np
    import slicer

    def volume(name):
        return slicer.util.addVolumeFromArray(np.ones((4, 4, 4), np.int16), name=name)

    volume("BraTS20_Training_009_flair")  # an incomplete case
    complete = {m: volume(f"brats2021_00003_{m.upper()}") for m in ("flair", "t1", "t1ce", "t2")}
    volume("unrelated")
    logic = module.BratsUNetLogic()
    parameters = logic.getParameters()
    parameters.t2 = None
    logic.guessInputs(parameters)
    assert parameters.inputs == complete

    chosen = volume("my_t1")
    parameters.t1 = chosen
    logic.guessInputs(parameters)
    assert parameters.t1 is chosen  # a choice the user made is kept


def test_inputs_follow_the_case_the_user_is_looking_at_and_keep_their_own_choices(module, scene):
    import numpy as np
    import slicer

    def case(name):
        return {m: slicer.util.addVolumeFromArray(np.ones((4, 4, 4), np.int16), name=f"{name}_{m}")
                for m in ("flair", "t1", "t1ce", "t2")}

    first = case("BraTS20_Training_001")
    logic = module.BratsUNetLogic()
    parameters = logic.getParameters()
    logic.guessInputs(parameters)
    assert parameters.inputs == first
    second = case("BraTS20_Training_002")  # a new case loaded: all four follow it
    logic.guessInputs(parameters)
    assert parameters.inputs == second
    # Shown in the views again (Slicer's active volume): the first case.
    selection = scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    selection.SetActiveVolumeID(first["t2"].GetID())
    logic.guessInputs(parameters)
    assert parameters.inputs == first
    # A volume the user chose is theirs: the others follow the next case, it stays.
    own = slicer.util.addVolumeFromArray(np.ones((4, 4, 4), np.int16), name="registered T1")
    parameters.t1 = own
    selection.SetActiveVolumeID(None)
    third = case("BraTS20_Training_003")
    logic.guessInputs(parameters)
    assert parameters.inputs == {**third, "t1": own}
