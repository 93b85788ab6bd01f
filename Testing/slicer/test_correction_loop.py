"""The correction loop: segment a case, correct the result as the Segment Editor would, add it to the training
cases and fine-tune the model that made it, all through ``BratsUNetLogic``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import slicer
from BratsUNetSlicer import cases, scene_io, segment, training

from BratsUNetLib.models.checkpoint import load_checkpoint
from BratsUNetLib.errors import BratsUNetError

CASE_ID = "BraTS20_Training_001"
SEGMENT_IDS = {"NCR": "NecroticTumorCore", "ED": "PeritumoralEdema", "ET": "EnhancingTumor"}
SETTINGS = training.TrainingOptions(epochs=1, learning_rate=1e-6, patch_size=32, validation_cases=1,
                                     network="small", seed=1, device="cpu")


def _load(scene, phantom_cases, names=None) -> dict:
    """The case's four volumes loaded through the Volumes logic, named ``names[modality]`` (BraTS names by
    default)."""
    paths = phantom_cases[CASE_ID]
    return {m: scene_io.load_volume(paths[m], (names or {}).get(m, f"{CASE_ID}_{m}")) for m in scene_io.MODALITIES}


def _segment_masks(node, reference) -> dict[str, np.ndarray]:
    """Each sub-region's voxels (bool, Slicer's K, J, I order) on ``reference``'s grid."""
    return {region: slicer.util.arrayFromSegmentBinaryLabelmap(node, sid, reference) > 0
            for region, sid in SEGMENT_IDS.items()}


def _brats_labels(masks: dict[str, np.ndarray]) -> np.ndarray:
    labels = np.zeros(masks["ED"].shape, dtype=np.uint8)
    for region in ("ED", "NCR", "ET"):
        labels[masks[region]] = cases.LABEL_VALUES[region]
    return labels


def _correct(node, reference) -> np.ndarray:
    """Edit the segments as a user in the Segment Editor would: erase the edema in the upper half of the volume
    and paint necrosis in a block (overwriting the other segments there). Returns the BraTS label map the node
    now holds (K, J, I)."""
    masks = _segment_masks(node, reference)
    masks["ED"][masks["ED"].shape[0] // 2:] = False
    block = (slice(8, 14), slice(10, 18), slice(12, 20))
    for region in ("ED", "ET"):
        masks[region][block] = False
    masks["NCR"][block] = True
    for region, sid in SEGMENT_IDS.items():
        slicer.util.updateSegmentBinaryLabelmapFromArray(masks[region].astype(np.uint8), node, sid, reference)
    return _brats_labels(masks)


def test_a_corrected_result_is_added_to_the_cases_and_fine_tuned_on(scene, logic, phantom_cases, small_model, tmp_path):
    volumes = _load(scene, phantom_cases)
    node = logic.segment(*(volumes[m] for m in scene_io.MODALITIES), model=str(small_model), device="cpu",
                         wait=True)
    predicted = _brats_labels(_segment_masks(node, volumes["flair"]))
    # A prediction is no reference: until it is added, the case has no label.
    [case] = cases.discover_cases(scene)
    assert case.label is None and not case.usable

    corrected = _correct(node, volumes["flair"])
    assert (corrected[8:14, 10:18, 12:20] == 1).all() and not (corrected[16:] == 2).any()
    assert np.count_nonzero(corrected != predicted) > 0

    # The panel's one fine-tuning path: "Add the corrected segmentation to the cases", then Train.
    parameters = logic.getParameters()
    parameters.outputSegmentation, parameters.modelPath, parameters.fineTune = node, "", False
    parameters.trainingFolder = str(tmp_path)
    parameters.epochs, parameters.learningRate, parameters.patchSize = 1, 1e-6, 32
    parameters.validationCases, parameters.networkSize, parameters.seed, parameters.device = 1, "small", 1, "cpu"
    added = logic.addCorrectedCaseWithParameters(parameters)
    assert added.name == CASE_ID
    # The model that made the segmentation is selected and Fine-tune ticked; the correction is no longer the output.
    assert parameters.modelPath == str(small_model.resolve()) and parameters.fineTune
    assert parameters.outputSegmentation is None and parameters.volumesTable is None
    assert f"corrected {node.GetName()}, not trained on yet" in cases.describe_cases(cases.discover_cases(scene))
    messages = []
    job = logic.trainWithParameters(parameters, onEvent=lambda e: messages.append(e.get("text", "")))
    model = logic.waitFor(job)["model"]

    [case] = cases.discover_cases(scene)
    assert case.usable and case.label is node and case.volumes == volumes
    np.testing.assert_array_equal(cases.label_array(case), corrected)
    assert f"corrected {node.GetName()}, fine-tuned into {model}" in cases.describe_cases([case])
    # Fine-tuned from the model that made the segmentation...
    started_from = job.argv[job.argv.index("--pretrained_model_filename") + 1]
    assert started_from == str(small_model.resolve())
    assert any("Starting from the weights of" in text and started_from in text for text in messages)
    # ... on the corrected voxels, written for training in a run folder of its own, with no validation case.
    run = tmp_path / training.FINE_TUNING_STEM
    config = json.loads((run / f"{training.CONFIG_NAME}.json").read_text())
    [entry] = config["training_filenames"]
    assert "validation_filenames" not in config
    written = scene_io.read_volume(entry["label"], labelmap=True)  # outside the scene, as Slicer reads it
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(written), corrected)

    assert model.startswith(str(run)) and logic.models.get(model).trained_here
    checkpoint, original = load_checkpoint(model), load_checkpoint(small_model)
    assert checkpoint["epoch"] == 1 and checkpoint["training"]["cases"] == 1
    # One step at a learning rate of 1e-6 moves the weights by about 1e-6: they are the segmenting model's,
    # trained; a network starting from random weights would be far from them.
    differences = [float((checkpoint["state_dict"][key] - value).abs().max())
                   for key, value in original["state_dict"].items() if value.is_floating_point()]
    assert 0 < max(differences) < 1e-4
    # Train again with Fine-tune ticked: a new folder beside the first, which stays as it was.
    assert training.fine_tuning_run(tmp_path, SETTINGS, resume=False)[0] == str(tmp_path / "fine_tune_2")
    assert training.fine_tuning_run(tmp_path, SETTINGS, resume=True)[0] == str(run)  # Resume: the newest run

    # The corrections are kept: the selectors no longer point at them, and refilling them is refused.
    with pytest.raises(BratsUNetError, match="corrected training case"):
        logic.segment(*(volumes[m] for m in scene_io.MODALITIES), model=model, outputSegmentation=node,
                      device="cpu")
    np.testing.assert_array_equal(cases.label_array(case), corrected)

    # The next round: segment with the new model into a new node and correct it; it becomes the case's label
    # (the latest correction), to be fine-tuned on in the next folder of the same output folder (fine_tune_2).
    second = logic.segment(*(volumes[m] for m in scene_io.MODALITIES), model=model, device="cpu", wait=True)
    assert second is not node and second.GetAttribute(segment.MODEL_ATTRIBUTE) == model
    recorrected = _correct(second, volumes["flair"])
    logic.addCorrectedCase(second)
    [case] = cases.discover_cases(scene)
    assert case.label is second
    np.testing.assert_array_equal(cases.label_array(case), recorrected)
    assert f"corrected {second.GetName()}, not trained on yet" in cases.describe_cases([case])


def test_a_result_is_found_through_its_inputs_whatever_their_names(scene, logic, phantom_cases, small_model):
    names = {"flair": "Series 3", "t1": "Series 4", "t1ce": "Series 5", "t2": "Series 6"}
    volumes = _load(scene, phantom_cases, names)
    node = logic.segment(*(volumes[m] for m in scene_io.MODALITIES), model=str(small_model), device="cpu",
                         wait=True)
    assert cases.discover_cases(scene) == []

    case = logic.addCorrectedCase(node)

    assert cases.discover_cases(scene) == [case]
    assert case.name == "Series 3" and case.usable and case.volumes == volumes and case.label is node


def test_what_cannot_be_a_training_case_is_refused_and_left_unchanged(scene, logic, phantom_cases, small_model,
                                                                       tmp_path):
    volumes = _load(scene, phantom_cases)
    drawn = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my drawing")
    with pytest.raises(BratsUNetError, match="'my drawing' was not made by BratsUNet"):
        logic.addCorrectedCase(drawn)

    node = logic.segment(*(volumes[m] for m in scene_io.MODALITIES), model=str(small_model), device="cpu",
                         wait=True)
    node.GetSegmentation().AddEmptySegment("Segment_1")  # a segment the Segment Editor added, not a sub-region
    with pytest.raises(BratsUNetError, match="segments not named as BraTS sub-regions: Segment_1"):
        logic.fineTuneOnCorrectedCase(node, str(tmp_path), SETTINGS)
    assert cases.discover_cases(scene)[0].label is None  # still a prediction
    assert not any(tmp_path.iterdir())  # nothing written

    scene_io.load_volume(phantom_cases[CASE_ID]["seg"], f"{CASE_ID}_seg", labelmap=True)
    scene_io.load_volume(phantom_cases[CASE_ID]["seg"], f"{CASE_ID}_Seg", labelmap=True)
    assert "two labels" in cases.describe_cases(cases.discover_cases(scene))  # which one is meant is unknown


def test_a_case_loaded_with_its_seg_is_fine_tuned_on_its_correction(scene, logic, phantom_cases, small_model,
                                                                     tmp_path):
    """A case loaded with its reference (``<case>_seg``), segmented, corrected and fine-tuned on: the correction
    is the case's label from then on (the panel says so), no "two labels"."""
    volumes = _load(scene, phantom_cases)
    reference = scene_io.load_volume(phantom_cases[CASE_ID]["seg"], f"{CASE_ID}_seg", labelmap=True)
    node = logic.segment(*(volumes[m] for m in scene_io.MODALITIES), model=str(small_model), device="cpu",
                         wait=True)
    expected = _correct(node, volumes["flair"])
    model = logic.fineTuneOnCorrectedCase(node, str(tmp_path), SETTINGS, wait=True)
    assert load_checkpoint(model)["epoch"] == 1
    (case,) = cases.discover_cases(scene)
    assert case.label is node and case.usable
    assert case.notes == [f"corrected {node.GetName()}, fine-tuned into {model}",
                          f"label {node.GetName()} (the corrected result), not {reference.GetName()}"]
    assert "(the corrected result), not BraTS20_Training_001_seg" in cases.describe_cases([case])
    run = json.loads(next(tmp_path.glob(f"*/{training.CONFIG_NAME}.json")).read_text())
    written = scene_io.read_volume(run["training_filenames"][0]["label"], labelmap=True)  # the correction, trained on
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(written), expected)
