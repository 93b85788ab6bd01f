"""Refining a result with clicks through ``BratsUNetLogic.refine`` on a real scene: the same label map as
``bratsunet refine`` on the same files and points, in the same node, and a refusal that leaves the scene as it
was. The guided model has random weights: what is compared is the way there, not the quality of the answer."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
import vtk
from BratsUNetSlicer import cases, results, scene_io, segment, training
from BratsUNetSlicer.transaction import scene_state

from BratsUNetLib.cli.main import main as bratsunet
from BratsUNetLib.errors import BratsUNetError

CASE = "BraTS20_Training_001"


@pytest.fixture(scope="module")
def guided_model(tmp_path_factory):
    import torch

    from BratsUNetLib.config.loading import load_config
    from BratsUNetLib.models.checkpoint import save_checkpoint
    from BratsUNetLib.models.networks import build_network

    config = training.training_config(training.TrainingOptions(network="small", patch_size=32), [], [])
    config["model"]["in_channels"] = 13
    config["guidance"] = {"sigma": 2, "margin": 6, "max_edge": 16}
    config = load_config(config)
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("guided") / "guided.pth", build_network(config["model"]),
                           config=config, channels=list(scene_io.MODALITIES))


def _labels(node, volumes):
    return cases.label_array(cases.TrainingCase(node.GetName(), volumes, node))


def test_refine_in_the_scene_is_refine_on_the_command_line(scene, logic, phantom_cases, guided_model, tmp_path):
    paths = phantom_cases[CASE]
    volumes = {m: scene_io.load_volume(paths[m], f"{CASE}_{m}") for m in scene_io.MODALITIES}
    node = logic.segment(**volumes, model=str(guided_model), device="cpu", wait=True)  # automatic, no clicks
    automatic = _labels(node, volumes)
    before = cases.write_label_map(automatic, volumes["flair"], tmp_path / "before.nii.gz")
    matrix = vtk.vtkMatrix4x4()
    volumes["flair"].GetIJKToRASMatrix(matrix)
    add = matrix.MultiplyPoint([16.0, 16.0, 16.0, 1.0])[:3]  # the middle of the 32³ case, in RAS mm
    remove = matrix.MultiplyPoint([4.0, 4.0, 4.0, 1.0])[:3]
    markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "add")
    markups.AddControlPoint(*add)

    refined = logic.refine(node, addPoints=markups, removePoints=[remove], region="TC", device="cpu", wait=True)

    assert refined is node  # refilled in place
    output = tmp_path / "cli.nii.gz"
    argv = ["refine", "--model", str(guided_model), "--segmentation", str(before), "--output", str(output),
            "--labels", "brats2020", "--device", "cpu", "--progress", "none",
            "--add", ",".join(f"{v:.4f}" for v in add) + ":TC", "--remove", ",".join(f"{v:.4f}" for v in remove) + ":TC"]
    for modality in scene_io.MODALITIES:
        argv += [f"--{modality}", str(paths[modality])]
    assert bratsunet(argv) == 0
    expected = slicer.util.arrayFromVolume(scene_io.read_volume(output, labelmap=True))
    np.testing.assert_array_equal(_labels(node, volumes), expected)
    assert (expected != automatic).any()  # the clicks changed something: the comparison is not of two copies

    # The panel's way (its point lists, region and model), the volumes table following the refined labels.
    parameters = logic.getParameters()
    parameters.outputSegmentation, parameters.refineAdd, parameters.refineRegion = node, markups, "ET"
    parameters.modelPath, parameters.device = str(guided_model), "cpu"
    job = logic.refineWithParameters(parameters)
    logic.waitFor(job)
    logic.adoptResult(parameters, job)
    table = node.GetNodeReference(segment.TABLE_ROLE)
    assert parameters.outputSegmentation is node and parameters.volumesTable is table
    cells = table.GetTable()
    rows = {cells.GetValue(r, 0).ToString(): cells.GetValue(r, 1).ToDouble() for r in range(cells.GetNumberOfRows())}
    assert rows[results.VOLUME_ROWS["WT"]] == pytest.approx(job.result["volumes_ml"]["WT"])
    assert node.GetSegmentation().GetNumberOfSegments() == 3


def test_a_refusal_leaves_the_scene_as_it_was(scene, logic, phantom_cases, small_model):
    paths = phantom_cases[CASE]
    volumes = {m: scene_io.load_volume(paths[m], f"{CASE}_{m}") for m in scene_io.MODALITIES}
    node = logic.segment(**volumes, model=str(small_model), device="cpu", wait=True)
    before = scene_state(scene)
    with pytest.raises(BratsUNetError, match="takes no clicks"):  # the worker's one line, as an exception
        logic.refine(node, addPoints=[(0.0, 0.0, 0.0)], device="cpu", wait=True)
    with pytest.raises(BratsUNetError, match="No point to refine with"):
        logic.refine(node, device="cpu", wait=True)
    drawn = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "drawn")
    with pytest.raises(BratsUNetError, match="was not made by BratsUNet"):
        logic.refine(drawn, addPoints=[(0.0, 0.0, 0.0)], model=str(small_model), device="cpu", wait=True)
    scene.RemoveNode(drawn)
    assert scene_state(scene) == before


def test_each_point_keeps_the_region_it_was_placed_for(scene):
    """The panel marks each placed point with the selected region; changing the region later does not make
    earlier points points of the new one."""
    from BratsUNetSlicer import refinement

    markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "add")
    markups.AddControlPoint(1.0, 2.0, 3.0)
    refinement.stamp_region(markups, "TC")
    markups.AddControlPoint(4.0, 5.0, 6.0)
    refinement.stamp_region(markups, "ET")
    markups.AddControlPoint(7.0, 8.0, 9.0)  # placed from the console, unmarked: the region asked for
    assert refinement.points_of(markups, "WT") == [((1.0, 2.0, 3.0), "TC"), ((4.0, 5.0, 6.0), "ET"),
                                                   ((7.0, 8.0, 9.0), "WT")]
    assert refinement.click_text(((1.0, -2.5, 3.0), "TC")) == "1.0000,-2.5000,3.0000:TC"
    with pytest.raises(BratsUNetError, match="Unknown region 'XX'"):
        refinement.points_of(markups, "XX")
    scene.RemoveNode(markups)


class SegmentEditorStandIn:
    """What the refinement asks of the Segment Editor's widget (``qMRMLSegmentEditorWidget``, desktop only): the
    node it edits, and saving the state for its undo, kept as the widget keeps it, in slicer-core's own
    ``vtkSegmentationHistory``."""

    def __init__(self, node):
        self.node = node
        self.history = slicer.vtkSegmentationHistory()
        self.history.SetSegmentation(node.GetSegmentation())

    def segmentationNode(self):
        return self.node

    def saveStateForUndo(self):
        self.history.SaveState()


def test_a_refinement_is_one_step_of_the_segment_editors_undo(scene, logic, phantom_cases, guided_model,
                                                              monkeypatch):
    paths = phantom_cases[CASE]
    volumes = {m: scene_io.load_volume(paths[m], f"{CASE}_{m}") for m in scene_io.MODALITIES}
    node = logic.segment(**volumes, model=str(guided_model), device="cpu", wait=True)
    automatic = _labels(node, volumes)
    editor = SegmentEditorStandIn(node)
    monkeypatch.setattr(slicer.modules, "SegmentEditorWidget", type("Widget", (), {"editor": editor})(),
                        raising=False)
    matrix = vtk.vtkMatrix4x4()
    volumes["flair"].GetIJKToRASMatrix(matrix)
    add = matrix.MultiplyPoint([16.0, 16.0, 16.0, 1.0])[:3]

    logic.refine(node, addPoints=[add], region="TC", device="cpu", wait=True)
    refined = _labels(node, volumes)
    assert (refined != automatic).any() and editor.history.GetNumberOfStates() == 1

    assert editor.history.RestorePreviousState()  # the editor's Undo
    np.testing.assert_array_equal(_labels(node, volumes), automatic)
