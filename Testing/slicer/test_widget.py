"""The panel's wiring: the widget's setup, its sections and the parameter node, on a real scene.

slicer-core has no Qt, so the ``.ui`` file's widgets are stand-ins (``unittest.mock`` objects whose values the test
sets); everything else -- the scene, the parameter node (through ``parameterNodeWrapper``), the sections of
``BratsUNetSlicer/panel_*.py`` and the logic -- is the module's own code. What this catches: a section that
reaches for a widget, a field or another section that is not there, or a value that does not travel between the
panel and the parameter node.
"""

from __future__ import annotations

import contextlib
from unittest import mock

import pytest
import qt
import slicer
from BratsUNetSlicer.parameters import WIDGETS
from slicer.util import VTKObservationMixin

NODE_FIELDS = ("flair", "t1", "t1ce", "t2", "outputSegmentation", "volumesTable", "refineAdd", "refineRemove")
FLAG_FIELDS = ("nativeResolution", "testTimeAugmentation", "brats2021Labels", "probabilityMaps", "fineTune",
               "show3D", "refineOnPlace")
COUNT_FIELDS = ("epochs", "batchSize", "patchSize", "validationCases", "seed")


def _panel() -> mock.MagicMock:
    """The ``.ui`` file's widgets: selectors empty, check boxes off, spin boxes at 3, paths '/x', choices 'cpu'."""
    ui = mock.MagicMock()
    for field, name in WIDGETS.items():
        widget = getattr(ui, name)
        if field in NODE_FIELDS:
            widget.currentNode.return_value = None
        elif field in FLAG_FIELDS:
            widget.checked = False
        elif field in COUNT_FIELDS:
            widget.value = 3
        elif field == "learningRate":
            widget.value = 0.01
        elif field in ("modelConfigPath", "trainingFolder"):
            widget.currentPath = "/x"
        else:  # combo boxes
            widget.currentData = "cpu"
            del widget.currentPath
            widget.findData.return_value = 0
    ui.modelComboBox.findData.return_value = -1
    return ui


@pytest.fixture
def widget(module, monkeypatch):
    ui = _panel()
    monkeypatch.setattr(qt, "QTimer", mock.MagicMock(), raising=False)
    monkeypatch.setattr(qt.QTimer, "singleShot", lambda _ms, call: call(), raising=False)
    monkeypatch.setattr(qt, "Qt", mock.MagicMock(ToolTipRole=3, UserRole=256), raising=False)
    settings = mock.MagicMock()
    settings.return_value.value.return_value = []
    monkeypatch.setattr(qt, "QSettings", settings, raising=False)
    monkeypatch.setattr(module.ScriptedLoadableModuleWidget, "setup", lambda self: None, raising=False)
    monkeypatch.setattr(slicer.util, "loadUI", lambda _path: mock.MagicMock(), raising=False)
    monkeypatch.setattr(slicer.util, "childWidgetVariables", lambda _widget: ui, raising=False)
    # Slicer's version shows the error in a dialog (and sets the wait cursor on the application): here it raises.
    monkeypatch.setattr(slicer.util, "tryWithErrorDisplay", lambda *args, **kwargs: contextlib.nullcontext())

    class Widget(module.BratsUNetWidget):
        def __init__(self):  # what ScriptedLoadableModuleWidget's constructor sets, without a main window
            VTKObservationMixin.__init__(self)
            self.logic = None
            self._parameterNode = None
            self.parent, self.layout = mock.MagicMock(), mock.MagicMock()

        def resourcePath(self, path):
            return path

    panel = Widget()
    panel.setup()
    yield panel, ui
    panel.cleanup()


def test_values_travel_between_the_panel_and_the_parameter_node(widget):
    panel, ui = widget
    panel.enter()  # the parameter node is made and shown: its defaults are in the widgets
    assert ui.epochsSpinBox.value == 50
    ui.epochsSpinBox.value = 7
    ui.trainingFolderLineEdit.currentPath = "/data/run"
    ui.fineTuneCheckBox.checked = True
    panel.updateParameterNodeFromGUI()
    assert (panel.parameters.epochs, panel.parameters.trainingFolder, panel.parameters.fineTune) == (7, "/data/run", True)
    assert panel.parameters.device == "cpu"
    panel.parameters.epochs = 12  # e.g. from the Python console: the node's Modified event updates the panel
    assert ui.epochsSpinBox.value == 12


@pytest.mark.parametrize("bf16_units", [True, False])
def test_the_precision_choices_say_their_cost_and_bf16_is_not_offered_without_its_units(monkeypatch, bf16_units,
                                                                                       request):
    from BratsUNetSlicer import panel_inputs

    monkeypatch.setattr(panel_inputs, "has_bf16_units", lambda: bf16_units)
    _panel_, ui = request.getfixturevalue("widget")
    combo = ui.precisionComboBox
    assert [call.args for call in combo.addItem.call_args_list] == [("Full (fp32)", ""), ("bf16", "bf16"),
                                                                    ("int8", "int8")]
    tooltips = {call.args[0]: call.args[1] for call in combo.setItemData.call_args_list if call.args[2] == 3}
    assert "end to end" in tooltips[0] and "Dice" in tooltips[2] and "?" not in "".join(tooltips.values())
    disabled = [call.args[0] for call in combo.setItemData.call_args_list if call.args[1:] == (0, 255)]
    assert disabled == ([] if bf16_units else [1])
    if not bf16_units:
        assert "no bf16 units" in tooltips[1]


def test_the_network_choice_is_hidden_while_fine_tuning(widget):
    """A model is fine-tuned with its own network: the panel's network choice is for training from scratch."""
    panel, ui = widget
    panel.enter()
    panel.parameters.fineTune = True
    assert ui.networkSizeComboBox.visible is False and ui.networkSizeLabel.visible is False
    panel.parameters.fineTune = False
    assert ui.networkSizeComboBox.visible is True and ui.networkSizeLabel.visible is True


def test_with_no_inputs_apply_is_off_and_the_training_list_says_what_to_load(widget):
    panel, ui = widget
    panel.enter()
    panel.updateGUIFromParameterNode()
    assert ui.applyButton.enabled is False
    assert ui.trainButton.text == "Train"
    panel.training.onRefreshCases()
    assert ui.casesText.plainText.startswith("No cases found")


def test_progress_events_and_closing_the_scene_leave_the_panel_usable(widget):
    panel, _ui = widget
    panel.results.onJobEvent("train", {"event": "start", "total": 3, "task": "epoch 1"})
    panel.onSceneStartClose(None, None)
    panel.enter()  # a new scene: a new parameter node, wired again
    assert panel.parameters is not None


def test_progress_shows_the_whole_run_in_percent_with_the_time_left(widget):
    panel, ui = widget
    panel.results.onJobEvent("train", {"event": "progress", "task": "epoch 2", "done": 3, "total": 10,
                                       "fraction": 0.65, "seconds_left": 180.0, "epoch": 2, "epochs": 3, "loss": 0.25})
    assert ui.trainingProgressBar.value == 650 and ui.trainingProgressBar.format == "%p%, about 3 min left"
    assert ui.trainingStatusLabel.text == "epoch 2 of 3, step 3 of 10, loss 0.2500"
    panel.results.onJobEvent("segment", {"event": "progress", "task": "segment", "done": 1, "total": 8,
                                         "fraction": 0.125, "seconds_left": 20.4})
    assert ui.progressBar.value == 125 and ui.progressBar.format == "%p%, 20 s left"


def test_models_of_earlier_sessions_come_back_and_the_ones_gone_are_pruned_with_a_note(widget, small_model,
                                                                                     monkeypatch):
    panel, ui = widget
    notes = []
    monkeypatch.setattr(slicer.util, "showStatusMessage", lambda text, msec=0: notes.append(text), raising=False)
    settings = qt.QSettings.return_value
    settings.value.return_value = [f"{small_model}|", "/moved/away/model.pth|"]  # what the last session saved
    panel.models.restore()
    assert panel.logic.models.get(str(small_model)) is not None  # remembered across the restart
    assert notes == ["Models not found any more were taken off the list: /moved/away/model.pth"]
    saved = settings.setValue.call_args.args
    assert saved[0] == "BratsUNet/Models" and saved[1] == [f"{small_model}|"]  # the dead path is forgotten


def test_show_in_3d_hides_and_shows_the_output_at_once_and_the_table_is_in_the_panel(widget, scene):
    panel, ui = widget
    panel.enter()
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "result")
    segmentation.CreateDefaultDisplayNodes()
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "result volumes")
    panel.parameters.outputSegmentation, panel.parameters.volumesTable = segmentation, table
    ui.volumesTableView.setMRMLTableNode.assert_called_with(table)  # the volumes table shown inside the panel
    assert ui.volumesTableView.visible is True
    panel.results.onShow3DToggled(False)
    assert not segmentation.GetDisplayNode().GetVisibility3D()
    panel.results.onShow3DToggled(True)
    assert segmentation.GetDisplayNode().GetVisibility3D()
    ui.show3DCheckBox.checked = False
    panel.updateParameterNodeFromGUI()
    assert panel.parameters.show3D is False  # and the next Apply passes it on (segmentWithParameters)
    panel.parameters.volumesTable = None
    assert ui.volumesTableView.visible is False  # no empty table before a result


def test_adding_the_correction_sets_the_panel_for_one_fine_tuning_path(widget, scene, monkeypatch):
    panel, ui = widget
    panel.enter()
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "corrected")
    panel.parameters.outputSegmentation = segmentation
    panel.updateButtons()
    assert ui.addCorrectedCaseButton.enabled
    added = []

    def add(parameters):  # the logic's part is tested on real results in test_correction_loop.py
        added.append(parameters.outputSegmentation)
        parameters.outputSegmentation, parameters.fineTune = None, True
        return mock.Mock(name="case")

    monkeypatch.setattr(panel.logic, "addCorrectedCaseWithParameters", add)
    panel.training.onAddCorrectedCase()
    assert added == [segmentation]
    assert ui.trainingCollapsibleButton.collapsed is False  # Train is in view
    assert "press Train" in ui.trainingStatusLabel.text
    panel.updateGUIFromParameterNode()
    assert ui.networkSizeComboBox.visible is False  # fine-tuning keeps the model's network
    assert not ui.addCorrectedCaseButton.enabled  # nothing is the output any more


def test_a_point_placed_refines_the_output_when_asked_and_refine_waits_for_a_running_segmentation(widget, scene,
                                                                                                 monkeypatch):
    panel, ui = widget
    panel.enter()
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "result")
    add = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "add")
    started = []
    monkeypatch.setattr(panel.results, "startOrCancel", lambda kind, failure, start: started.append(kind))
    panel.parameters.outputSegmentation, panel.parameters.refineAdd = segmentation, add
    panel.parameters.modelPath = "/models/guided.pth"
    assert ui.refineButton.enabled
    panel.parameters.refineRegion = "TC"
    add.AddControlPoint(1.0, 2.0, 3.0)  # a point placed (in a view, or by a script)
    assert started == ["segment"]
    assert add.GetNthControlPointDescription(0) == "TC"  # it keeps the region it was placed for
    add.InvokeEvent(slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent)  # a point dragged and dropped
    assert started == ["segment", "segment"]
    panel.parameters.refineOnPlace = False
    panel.parameters.refineRegion = "ET"
    add.AddControlPoint(4.0, 5.0, 6.0)
    assert len(started) == 2
    assert [add.GetNthControlPointDescription(i) for i in range(2)] == ["TC", "ET"]
    panel.refine.onRefine()  # the button
    assert len(started) == 3
    panel.parameters.refineAdd = None  # a list no longer chosen is no longer followed
    panel.parameters.refineOnPlace = True
    add.AddControlPoint(7.0, 8.0, 9.0)
    assert len(started) == 3
    # While a segmentation (or refinement) runs, a placed point waits instead of cancelling it.
    panel.parameters.refineAdd = add
    monkeypatch.setattr(type(panel.results), "runningKinds", property(lambda self: {"segment"}))
    add.AddControlPoint(1.0, 1.0, 1.0)
    assert len(started) == 3
    panel.updateButtons()
    assert not ui.refineButton.enabled


def test_the_panel_hears_of_a_job_that_something_else_finished(widget, fake_worker_command):
    """Inside Slicer the event loop's timer (jobs.start_job) hands a job its events and its end, whoever
    started it: the section shows the outcome and frees its button."""
    from BratsUNetSlicer.worker import WorkerClient
    from jobwait import finish

    panel, ui = widget
    panel.enter()
    client = WorkerClient(fake_worker_command)
    try:
        job = client.submit(["events", "2"])
        panel.results.startJob("train", job)
        assert ui.trainButton.text == "Cancel"
        finish(job)  # polled to its end by someone other than the panel (here: a wait)
        assert ui.trainingStatusLabel.text == "Done."
        assert ui.trainButton.text == "Train" and "train" not in panel.results.runningKinds
    finally:
        client.close()
