"""A failed or cancelled job leaves the scene exactly as it was; an edited result is never overwritten.

"As it was" is compared node by node: every node's ID, class and name, and the content (segments, table cells)
of segmentations and tables (:func:`BratsUNetSlicer.transaction.scene_state`), plus the attributes and
selectors a job touches. The jobs run through ``BratsUNetLogic`` against the stand-in worker
(``fake_worker.py``), told to fail or to hang, so that each test waits for an event of the job (its first
message, its end), never for an amount of time.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import slicer
from BratsUNetSlicer import cases, results, scene_io, segment, training
from BratsUNetSlicer.transaction import scene_state, segmentation_digest
from BratsUNetSlicer.worker import WorkerClient
from jobwait import finish, wait_until

from BratsUNetLib.errors import BratsUNetError, Cancelled

CASE = "BraTS20_Training_001"


@pytest.fixture
def inputs(scene, phantom_cases):
    case = phantom_cases[CASE]
    return {m: scene_io.load_volume(case[m], f"{CASE}_{m}") for m in scene_io.MODALITIES}


@pytest.fixture
def fake_logic(module, fake_worker_command):
    """The module's logic with the stand-in worker; ``script(kind)`` makes its next jobs start with ``kind``
    (``fail``: an error then exit 2; ``hang``: held until cancelled)."""
    logic = module.BratsUNetLogic(fake_worker_command)
    # A stand-in of its own (not the process's shared one, which tests patch): it answers both kinds of job.
    logic.worker = logic.trainingWorker = WorkerClient(fake_worker_command)
    submit = logic.worker.submit

    def script(kind: str | None) -> None:
        logic.worker.submit = submit if kind is None else (lambda argv, **kw: submit([kind, *argv], **kw))

    logic.script = script
    yield logic
    logic.worker.close()


def _segment(logic, inputs, model, **options):
    return logic.segment(**inputs, model=str(model), device="cpu", **options)


def _settings(epochs=1):
    return training.TrainingOptions(epochs=epochs, patch_size=16, validation_cases=0, device="cpu")


def _result(fake_logic, inputs, small_model):
    """A BratsUNet result made through the logic (the stand-in writes a label cube of each region)."""
    job = finish(_segment(fake_logic, inputs, small_model))
    assert job.state == "succeeded", job.error
    return job.result["segmentation"]


def _erase_a_voxel(segmentation, reference) -> None:
    """What a user's correction in the Segment Editor does: one voxel of the edema taken away."""
    segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName("Peritumoral edema (label 2)")
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, reference)
    k, j, i = (int(n) for n in np.argwhere(mask > 0)[0])
    mask[k, j, i] = 0
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentation, segment_id, reference)


# -- training ------------------------------------------------------------------------------------------------


@pytest.fixture
def training_case(scene, phantom_cases, inputs):
    """The case as a training case: its four volumes and its label as a segmentation named ``<case>_seg``."""
    results.import_segmentation(phantom_cases[CASE]["seg"], inputs["flair"], "brats2020", name=f"{CASE}_seg")
    return inputs


def test_a_failed_training_leaves_the_scene_as_it_was(scene, fake_logic, training_case, tmp_path):
    before = scene_state(scene)
    fake_logic.script("fail")
    job = fake_logic.train(str(tmp_path / "run"), _settings())
    assert job.result["table"].GetScene() is scene  # the plot is there while the run runs
    finish(job)
    assert job.state == "failed" and "damaged" in job.error
    assert scene_state(scene) == before  # the table, the chart and its five series are gone again


def test_a_failed_training_gives_a_chosen_table_back_its_rows(scene, fake_logic, training_case, tmp_path):
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "my training table")
    results.add_epoch_row(table, {"epoch": 1, "loss": 0.5})
    before = scene_state(scene)
    fake_logic.script("fail")
    with pytest.raises(BratsUNetError, match="damaged"):
        fake_logic.train(str(tmp_path / "run"), _settings(), table=table, wait=True)
    assert scene_state(scene) == before
    assert table.GetNumberOfRows() == 1 and table.GetCellText(0, 1) == "0.5"


def test_a_cancelled_training_leaves_the_scene_as_it_was(scene, fake_logic, training_case, tmp_path):
    before = scene_state(scene)
    fake_logic.script("hang")
    job = fake_logic.train(str(tmp_path / "run"), _settings())
    wait_until(job, lambda: bool(job.events), "the held worker's first message")
    job.cancel()
    assert job.state == "cancelled"
    assert scene_state(scene) == before


def test_a_training_that_cannot_start_adds_nothing(scene, fake_logic, training_case, tmp_path, monkeypatch):
    """The worker cannot be reached after the table and chart were made: they are taken away again."""
    before = scene_state(scene)

    def unreachable(argv, **kw):
        raise BratsUNetError("The BratsUNet worker could not be started (No such file or directory); check the "
                             "installation.")

    fake_logic.worker.submit = unreachable
    with pytest.raises(BratsUNetError, match="could not be started"):
        fake_logic.train(str(tmp_path / "run"), _settings())
    assert scene_state(scene) == before


# -- segmentation --------------------------------------------------------------------------------------------


def test_a_failed_segmentation_leaves_the_scene_as_it_was(scene, fake_logic, inputs, small_model):
    before = scene_state(scene)
    fake_logic.script("fail")
    with pytest.raises(BratsUNetError, match="damaged"):
        _segment(fake_logic, inputs, small_model, wait=True)
    assert scene_state(scene) == before


def test_a_result_that_fails_half_way_through_its_import_is_taken_back(scene, fake_logic, inputs, small_model,
                                                                         monkeypatch):
    """The segmentation node is made and filled, then filling its table fails: both go (rollback is
    structural, not a check before each step)."""
    before = scene_state(scene)

    def full_table(table, volumes):
        raise BratsUNetError("The volumes table could not be filled; try again.")

    monkeypatch.setattr(results, "update_volumes_table", full_table)
    with pytest.raises(BratsUNetError, match="volumes table could not be filled"):
        _segment(fake_logic, inputs, small_model, wait=True)
    assert scene_state(scene) == before


def test_a_refilled_result_is_restored_when_the_new_run_fails_half_way(scene, fake_logic, inputs, small_model,
                                                                       monkeypatch):
    node = _result(fake_logic, inputs, small_model)
    table = node.GetNodeReference(segment.TABLE_ROLE)
    before, digest = scene_state(scene), segmentation_digest(node)

    def full_table(table, volumes):
        raise BratsUNetError("The volumes table could not be filled; try again.")

    monkeypatch.setattr(results, "update_volumes_table", full_table)
    # Another model, whose result (a larger edema) would change the node if it stayed.
    other_model = shutil.copyfile(small_model, small_model.parent / "larger_model.pth")
    with pytest.raises(BratsUNetError, match="could not be filled"):
        _segment(fake_logic, inputs, other_model, outputSegmentation=node, volumesTable=table, wait=True)
    assert scene_state(scene) == before
    assert segmentation_digest(node) == digest
    assert node.GetAttribute(segment.DIGEST_ATTRIBUTE) == digest  # still counts as unedited


def test_a_cancelled_segmentation_leaves_the_scene_as_it_was(scene, fake_logic, inputs, small_model):
    before = scene_state(scene)
    fake_logic.script("hang")
    job = _segment(fake_logic, inputs, small_model)
    wait_until(job, lambda: bool(job.events), "the held worker's first message")
    with pytest.raises(Cancelled):
        job.cancel()
        fake_logic.waitFor(job)
    assert scene_state(scene) == before


# -- fine-tuning ---------------------------------------------------------------------------------------------


def test_a_failed_fine_tune_leaves_the_scene_and_the_selectors_as_they_were(scene, fake_logic, inputs, small_model,
                                                                           tmp_path):
    node = _result(fake_logic, inputs, small_model)
    _erase_a_voxel(node, inputs["flair"])
    parameters = fake_logic.getParameters()
    parameters.outputSegmentation = node
    parameters.volumesTable = node.GetNodeReference(segment.TABLE_ROLE)
    parameters.trainingFolder = str(tmp_path)
    parameters.epochs, parameters.patchSize, parameters.device = 1, 16, "cpu"
    fake_logic.addCorrectedCaseWithParameters(parameters)  # the panel's button: done, and the user's choice
    assert parameters.outputSegmentation is None and parameters.fineTune  # Apply would make a new result now
    before = scene_state(scene)
    fake_logic.script("fail")
    job = fake_logic.trainWithParameters(parameters)
    finish(job)
    assert job.state == "failed"
    assert scene_state(scene) == before
    assert node.GetAttribute(segment.TRAINING_LABEL_ATTRIBUTE)  # still a training case, not trained into a model
    assert not node.GetAttribute(segment.TRAINED_INTO_ATTRIBUTE)
    assert [c.name for c in cases.discover_cases(scene) if c.usable] == [CASE]


def test_adding_a_segmentation_bratsunet_did_not_make_changes_nothing(scene, fake_logic, inputs):
    drawn = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my drawing")
    drawn.GetSegmentation().AddEmptySegment("NecroticTumorCore", "Necrotic tumor core")
    parameters = fake_logic.getParameters()
    parameters.outputSegmentation = drawn
    before = scene_state(scene)
    with pytest.raises(BratsUNetError, match="was not made by BratsUNet"):
        fake_logic.addCorrectedCaseWithParameters(parameters)
    assert scene_state(scene) == before
    assert parameters.outputSegmentation is drawn and not parameters.fineTune


def test_a_cancelled_fine_tune_leaves_the_scene_as_it_was(scene, fake_logic, inputs, small_model, tmp_path):
    node = _result(fake_logic, inputs, small_model)
    _erase_a_voxel(node, inputs["flair"])
    before = scene_state(scene)
    fake_logic.script("hang")
    job = fake_logic.fineTuneOnCorrectedCase(node, str(tmp_path), _settings())
    wait_until(job, lambda: bool(job.events), "the held worker's first message")
    job.cancel()
    assert scene_state(scene) == before
    assert not node.GetAttribute(segment.TRAINING_LABEL_ATTRIBUTE)


# -- edited results ------------------------------------------------------------------------------------------


def test_an_edited_result_is_kept_and_the_new_one_goes_to_a_new_node(scene, fake_logic, inputs, small_model):
    node = _result(fake_logic, inputs, small_model)
    table = node.GetNodeReference(segment.TABLE_ROLE)
    _erase_a_voxel(node, inputs["flair"])
    edited = segmentation_digest(node)
    messages = []
    job = finish(_segment(fake_logic, inputs, small_model, outputSegmentation=node, volumesTable=table,
                          onEvent=lambda e: messages.append(e.get("text")) if e["event"] == "message" else None))
    assert job.state == "succeeded", job.error
    new = job.result["segmentation"]
    assert new is not node and job.result["table"] is not table
    assert segmentation_digest(node) == edited  # the user's correction is untouched
    assert f"'{node.GetName()}' was edited" in job.result["note"] and f"'{new.GetName()}'" in job.result["note"]
    assert job.result["note"] in messages  # the panel's log and the console caller see it


def test_an_unedited_result_is_refilled_in_place(scene, fake_logic, inputs, small_model):
    node = _result(fake_logic, inputs, small_model)
    nodes_before = [n for n, *_ in scene_state(scene)]
    job = finish(_segment(fake_logic, inputs, small_model, outputSegmentation=node,
                          volumesTable=node.GetNodeReference(segment.TABLE_ROLE)))
    assert job.state == "succeeded", job.error
    assert job.result["segmentation"] is node and "note" not in job.result
    assert [n for n, *_ in scene_state(scene)] == nodes_before


def test_a_renamed_segment_counts_as_an_edit(scene, fake_logic, inputs, small_model):
    node = _result(fake_logic, inputs, small_model)
    node.GetSegmentation().GetNthSegment(0).SetName("my necrosis")
    job = finish(_segment(fake_logic, inputs, small_model, outputSegmentation=node))
    assert job.result["segmentation"] is not node
    assert node.GetSegmentation().GetNthSegment(0).GetName() == "my necrosis"


# -- refused before any work ---------------------------------------------------------------------------------


def _segmentation(scene, name="a segmentation"):
    return scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)


WRONG_NODES = {
    # selector -> (what to put there, a word the message must hold)
    "flair": (lambda scene, inputs: _segmentation(scene, "tumour outline"), "a segmentation"),
    "t1": (lambda scene, inputs: scene.AddNewNodeByClass("vtkMRMLModelNode", "brain surface"), "a model"),
    "t1ce": (lambda scene, inputs: slicer.util.addVolumeFromArray(np.ones((4, 4, 4), np.uint8), name="labels",
                                                                  nodeClassName="vtkMRMLLabelMapVolumeNode"),
             "a label map"),
    "t2": (lambda scene, inputs: scene.AddNewNodeByClass("vtkMRMLTableNode", "stats"), "a table"),
    "outputSegmentation": (lambda scene, inputs: inputs["flair"], "a scalar volume"),
    "volumesTable": (lambda scene, inputs: _segmentation(scene), "a segmentation"),
}


@pytest.mark.parametrize("selector", list(WRONG_NODES))
def test_a_node_of_the_wrong_kind_is_refused_before_any_work(scene, fake_logic, inputs, selector, tmp_path):
    make, kind = WRONG_NODES[selector]
    wrong = make(scene, inputs)
    before = scene_state(scene)
    arguments = {**inputs, selector: wrong}
    missing_model = tmp_path / "not_read.pth"  # a model is read only after the nodes passed
    with pytest.raises(BratsUNetError) as raised:
        fake_logic.segment(**arguments, model=str(missing_model), device="cpu")
    message = str(raised.value)
    assert "\n" not in message and f"'{wrong.GetName()}'" in message and kind in message, message
    assert fake_logic.worker.process_id is None  # no worker started
    assert scene_state(scene) == before


def test_a_busy_logic_refuses_a_second_job_with_one_line(scene, fake_logic, inputs, small_model, training_case,
                                                         tmp_path):
    fake_logic.script("hang")
    job = _segment(fake_logic, inputs, small_model)
    wait_until(job, lambda: bool(job.events), "the held worker's first message")
    before = scene_state(scene)
    for call in (lambda: _segment(fake_logic, inputs, small_model),
                 lambda: fake_logic.train(str(tmp_path / "run"), _settings())):
        with pytest.raises(BratsUNetError, match="already running a job") as raised:
            call()
        assert "\n" not in str(raised.value)
    assert scene_state(scene) == before
    assert not (tmp_path / "run").exists()
    job.cancel()


def test_a_huge_network_checkpoint_is_refused_before_it_is_built(scene, fake_logic, inputs, tmp_path, monkeypatch):
    """A small file whose stored config asks for an enormous network: Slicer's own process must not build it."""
    import torch

    from BratsUNetLib.models import checkpoint

    path = huge_network_checkpoint(tmp_path / "huge.pth")
    built = []
    monkeypatch.setattr(checkpoint, "build_network", lambda block: built.append(block) or torch.nn.Identity())
    before = scene_state(scene)
    with pytest.raises(BratsUNetError) as raised:
        _segment(fake_logic, inputs, path)
    message = str(raised.value)
    assert "\n" not in message and str(path) in message and "memory" in message, message
    assert built == [] and fake_logic.worker.process_id is None
    assert scene_state(scene) == before


def huge_network_checkpoint(path):
    """A BratsUNet checkpoint of a tiny network whose stored config says ``filters`` [2**20, ...]."""
    import torch

    from BratsUNetLib.models.checkpoint import load_checkpoint, save_checkpoint
    from BratsUNetLib.models.networks import build_network
    from BratsUNetSlicer.testing import small_checkpoint

    small = small_checkpoint(path.parent / "small_for_huge.pth", patch_size=16)
    content = load_checkpoint(small)
    config = content["config"]
    network = build_network(config["model"])
    save_checkpoint(path, network, config=config, channels=list(content["channels"]))
    payload = torch.load(path, weights_only=True)
    levels = len(payload["config"]["model"]["filters"])
    payload["config"]["model"]["filters"] = [2 ** 20 * (level + 1) for level in range(levels)]
    torch.save(payload, path)
    small.unlink()
    return path


def test_a_parameter_node_holding_the_wrong_kind_is_refused(scene, fake_logic, inputs, small_model):
    """What Apply does when a selector (or a loaded scene) holds a segmentation where a volume belongs."""
    parameters = fake_logic.getParameters()
    for modality, node in inputs.items():
        setattr(parameters, modality, node)
    parameters.modelPath = str(small_model)
    outline = _segmentation(scene, "t1ce outline")
    with pytest.raises(TypeError):  # the typed field refuses it, as Slicer's parameterNodeWrapper does...
        parameters.t1ce = outline
    # ...but a loaded scene (or another module) can still point the reference at it.
    parameters.parameterNode.SetNodeReferenceID("t1ce", outline.GetID())
    before = scene_state(scene)
    with pytest.raises(BratsUNetError, match="'t1ce outline' is a segmentation, not an MRI volume"):
        fake_logic.segmentWithParameters(parameters)
    assert scene_state(scene) == before and fake_logic.worker.process_id is None


@pytest.mark.parametrize("raised", [TypeError("a bug\nin two lines"), PermissionError(13, "Permission denied", "/x")])
def test_whatever_goes_wrong_inside_the_logic_is_one_line_bratsuneterror(scene, fake_logic, inputs, small_model,
                                                                         monkeypatch, raised):
    def broken(*args, **kwargs):
        raise raised

    monkeypatch.setattr(segment, "start", broken)
    before = scene_state(scene)
    with pytest.raises(BratsUNetError) as error:
        _segment(fake_logic, inputs, small_model)
    assert "\n" not in str(error.value)
    assert ("'/x'" in str(error.value)) if isinstance(raised, OSError) else ("application log" in str(error.value))
    assert scene_state(scene) == before
