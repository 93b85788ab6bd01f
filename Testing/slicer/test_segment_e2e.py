"""Segmenting through ``BratsUNetLogic.segment`` with the real worker gives the voxels of ``bratsunet segment``.

Volumes are loaded the way Slicer loads them (Volumes logic), segmented by a small random-weight model in the
worker process, and the segmentation node, exported to a label map, is compared with the command line's output
on the same files: through the affines, never by assuming an array order.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import nibabel
import numpy as np
import pytest
import slicer
from BratsUNetSlicer import scene_io
from jobwait import finish
from scipy import ndimage

from BratsUNetLib.cli.main import main as bratsunet
from BratsUNetLib.errors import BratsUNetError, Cancelled

CLOSED_SURFACE = slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName()
SEGMENTS = {"NecroticTumorCore": 1, "PeritumoralEdema": 2, "EnhancingTumor": 4}  # segment ID -> label value


def _load_case(paths: dict, case: str) -> dict:
    return {m: scene_io.load_volume(paths[m], f"{case}_{m}") for m in scene_io.MODALITIES}


def _command_line_labels(paths: dict, model, tmp_path, *extra: str) -> nibabel.Nifti1Image:
    tmp_path.mkdir(parents=True, exist_ok=True)
    output = tmp_path / "cli_labels.nii.gz"
    argv = ["segment", "--model", str(model), "--output", str(output), "--device", "cpu", "--progress", "none"]
    for modality in scene_io.MODALITIES:
        argv += [f"--{modality}", str(paths[modality])]
    assert bratsunet([*argv, *extra]) == 0
    return nibabel.load(str(output))


def _segmentation_as_file(node, reference, path) -> nibabel.Nifti1Image:
    """The segmentation as a BraTS label map on the reference grid, written by Slicer's own writer."""
    labels = np.zeros(slicer.util.arrayFromVolume(reference).shape, np.uint8)
    for segment_id, value in SEGMENTS.items():
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, reference)
        labels[mask > 0] = value
    labelmap = slicer.vtkMRMLLabelMapVolumeNode()
    labelmap.CopyOrientation(reference)
    slicer.util.updateVolumeFromArray(labelmap, labels)
    return nibabel.load(str(scene_io.export_volume(labelmap, path)))


def _assert_same_labels(actual: nibabel.Nifti1Image, expected: nibabel.Nifti1Image) -> None:
    actual, expected = nibabel.as_closest_canonical(actual), nibabel.as_closest_canonical(expected)
    np.testing.assert_allclose(actual.affine, expected.affine, atol=1e-4)
    expected_labels = np.asarray(expected.dataobj)
    assert {1, 2, 4} <= set(np.unique(expected_labels).tolist())  # the comparison is not trivially empty
    np.testing.assert_array_equal(np.asarray(actual.dataobj), expected_labels)


@pytest.mark.parametrize("case, edited", [("BraTS20_Training_001", False), ("BraTS20_Training_002", False),
                                          ("BraTS20_Training_001", True)])
def test_segment_matches_the_command_line_for_lps_and_left_handed_files(scene, logic, phantom_cases, small_model,
                                                                        tmp_path, case, edited):
    """Unchanged volumes go to the worker as their files; edited ones (``edited``) are exported by Slicer."""
    paths = phantom_cases[case]
    volumes = _load_case(paths, case)
    if edited:
        for node in volumes.values():
            slicer.util.arrayFromVolumeModified(node)
        assert not any(scene_io.source_file(node) for node in volumes.values())

    node = logic.segment(**volumes, model=str(small_model), device="cpu", wait=True)

    names = [node.GetSegmentation().GetNthSegment(i).GetName() for i in range(3)]
    assert names == ["Necrotic tumor core (label 1)", "Peritumoral edema (label 2)", "Enhancing tumor (label 4)"]
    # Shown in the 3D view as closed surfaces (the default), beside the slice views.
    assert node.GetSegmentation().ContainsRepresentation(CLOSED_SURFACE) and node.GetDisplayNode().GetVisibility3D()
    assert node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole()) is volumes["flair"]
    actual = _segmentation_as_file(node, volumes["flair"], tmp_path / "slicer_labels.nii")
    _assert_same_labels(actual, _command_line_labels(paths, small_model, tmp_path))



def test_native_resolution_is_the_command_lines_native_option(scene, logic, phantom_cases, small_model, tmp_path):
    paths = phantom_cases["BraTS20_Training_001"]
    volumes = _load_case(paths, "BraTS20_Training_001")

    node = logic.segment(**volumes, model=str(small_model), device="cpu", nativeResolution=True, show3D=False,
                         wait=True)
    assert not node.GetSegmentation().ContainsRepresentation(CLOSED_SURFACE)  # no surfaces made when not asked

    def labels(image: nibabel.Nifti1Image) -> np.ndarray:
        return np.asarray(nibabel.as_closest_canonical(image).dataobj)

    actual = labels(_segmentation_as_file(node, volumes["flair"], tmp_path / "slicer_labels.nii"))
    native = labels(_command_line_labels(paths, small_model, tmp_path / "native", "--native"))
    resized = labels(_command_line_labels(paths, small_model, tmp_path / "resized"))
    np.testing.assert_array_equal(actual, native)
    assert (native != resized).any()  # the option changed how the network ran


def _on_another_grid(path, tmp_path):
    """``path`` resampled (trilinear) onto a coarser, shifted, oblique-free grid that still covers the brain."""
    image = nibabel.load(str(path))
    affine = image.affine @ np.array([[1.25, 0, 0, 1.5], [0, 1.25, 0, 2.0], [0, 0, 1.25, 0.5], [0, 0, 0, 1]])
    shape = (24, 24, 24)
    voxel_to_source = np.linalg.inv(image.affine) @ affine
    data = ndimage.affine_transform(np.asarray(image.dataobj, dtype=np.float32), voxel_to_source[:3, :3],
                                    voxel_to_source[:3, 3], output_shape=shape, order=1)
    out = tmp_path / "t2_other_grid.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.rint(data).astype(np.int16), affine), str(out))
    return out


@pytest.mark.parametrize("edited", [False, True])
def test_a_t2_on_another_grid_is_resampled_onto_the_reference(scene, logic, phantom_cases, small_model, tmp_path,
                                                              edited):
    paths = dict(phantom_cases["BraTS20_Training_001"])
    paths["t2"] = _on_another_grid(paths["t2"], tmp_path)
    volumes = _load_case(paths, "BraTS20_Training_001")
    assert volumes["t2"].GetImageData().GetDimensions() == (24, 24, 24)
    if edited:  # Slicer exports the T2 on its own grid; the worker resamples it
        slicer.util.arrayFromVolumeModified(volumes["t2"])

    node = logic.segment(**volumes, model=str(small_model), device="cpu", wait=True)

    actual = _segmentation_as_file(node, volumes["flair"], tmp_path / "slicer_labels.nii")
    assert actual.shape == (32, 32, 32)
    _assert_same_labels(actual, _command_line_labels(paths, small_model, tmp_path))


def test_background_segmentation_streams_progress_and_refills_the_output(scene, logic, phantom_cases,
                                                                        small_model):
    volumes = _load_case(phantom_cases["BraTS20_Training_001"], "BraTS20_Training_001")
    parameters = logic.getParameters()
    logic.guessInputs(parameters)
    parameters.modelPath = str(small_model)
    parameters.device = "cpu"
    parameters.probabilityMaps = True
    seen = []

    job = logic.segmentWithParameters(parameters, onEvent=seen.append)
    finish(job)  # handles the events as they come, as the event loop's timer does in Slicer, until "done"

    assert job.state == "succeeded", job.error
    kinds = [event["event"] for event in seen]
    assert kinds.index("start") < kinds.index("progress") < kinds.index("result") < kinds.index("done")
    assert kinds[-1] == "done"
    logic.adoptResult(parameters, job)
    first = parameters.outputSegmentation
    assert first is job.result["segmentation"] and parameters.volumesTable is job.result["table"]
    assert [n.GetName() for n in job.result["probabilities"]] == [
        f"{first.GetName()} {region} probability" for region in ("WT", "TC", "ET")]
    count = scene.GetNumberOfNodes()

    again = logic.segmentWithParameters(parameters, wait=True)

    assert again is first and scene.GetNumberOfNodes() == count  # refilled, not piled up
    assert parameters.inputs == volumes


def test_errors_reach_the_console_caller_as_one_line_exceptions(scene, logic, phantom_cases, small_model,
                                                                tmp_path):
    volumes = _load_case(phantom_cases["BraTS20_Training_001"], "BraTS20_Training_001")
    count = scene.GetNumberOfNodes()
    with pytest.raises(BratsUNetError, match="No T1 volume is selected"):
        logic.segment(**dict(volumes, t1=None), model=str(small_model), wait=True)
    with pytest.raises(BratsUNetError, match="does not exist"):
        logic.segment(**volumes, model=str(tmp_path / "missing.pth"), wait=True)
    with pytest.raises(BratsUNetError, match="no usable Apple MPS|no CUDA GPU|not available"):
        logic.segment(**volumes, model=str(small_model), device="mps", wait=True)
    assert scene.GetNumberOfNodes() == count


def test_cancel_through_the_logic_raises_cancelled_and_adds_nothing(scene, logic, phantom_cases, small_model):
    volumes = _load_case(phantom_cases["BraTS20_Training_001"], "BraTS20_Training_001")
    count = scene.GetNumberOfNodes()
    job = logic.segment(**volumes, model=str(small_model), device="cpu", testTimeAugmentation=True)
    job.cancel()
    with pytest.raises(Cancelled):
        logic.waitFor(job)
    assert scene.GetNumberOfNodes() == count
    assert logic.segment(**volumes, model=str(small_model), device="cpu", wait=True) is not None


def test_self_test_passes(scene, module, worker, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the sample case is generated into the user's cache
    monkeypatch.setattr(module, "shared_worker", lambda purpose, command=None: worker)
    module.BratsUNetTest().runTest()


def test_an_original_3dunetcnn_checkpoint_segments_with_its_config(scene, logic, phantom_cases, small_model,
                                                                   tmp_path):
    """A bare state_dict (as 3DUnetCNN saved) plus its config gives the same result as the same weights saved
    by BratsUNet; without the config it is refused with a message that says what to add."""
    import json

    import torch

    from BratsUNetLib.models.checkpoint import load_checkpoint

    content = load_checkpoint(small_model)
    bare, config = tmp_path / "original_model.pth", tmp_path / "config.json"
    torch.save(content["state_dict"], bare)
    config.write_text(json.dumps(content["config"]))
    volumes = _load_case(phantom_cases["BraTS20_Training_001"], "BraTS20_Training_001")

    with pytest.raises(BratsUNetError, match="original 3DUnetCNN checkpoint") as refused:
        logic.segment(**volumes, model=str(bare), wait=True)
    assert "the 3DUnetCNN config field" in str(refused.value) and "--config" not in str(refused.value)
    original = logic.segment(**volumes, model=str(bare), config=str(config), device="cpu", wait=True)
    own = logic.segment(**volumes, model=str(small_model), device="cpu", wait=True)

    reference = volumes["flair"]
    np.testing.assert_array_equal(_segmentation_as_file(original, reference, tmp_path / "a.nii").dataobj,
                                  _segmentation_as_file(own, reference, tmp_path / "b.nii").dataobj)
    assert "original 3DUnetCNN checkpoint" in logic.models.card(bare, config)
    assert logic.models.get(bare).config == str(config)


def test_volumes_of_two_cases_are_refused_naming_the_odd_one(scene, logic, phantom_cases, small_model):
    volumes = _load_case(phantom_cases["BraTS20_Training_001"], "BraTS20_Training_001")
    other = scene_io.load_volume(phantom_cases["BraTS20_Training_002"]["t1"], "BraTS20_Training_002_t1")
    count = scene.GetNumberOfNodes()
    with pytest.raises(BratsUNetError, match="The T1 input 'BraTS20_Training_002_t1' is named as another case than "
                                             "the FLAIR input 'BraTS20_Training_001_flair'"):
        logic.segment(**{**volumes, "t1": other}, model=str(small_model), device="cpu", wait=True)
    assert scene.GetNumberOfNodes() == count  # nothing made
    # A volume named without a case number (a registered copy, say) may be any case's.
    other.SetName("registered_t1")
    assert logic.segment(**{**volumes, "t1": other}, model=str(small_model), device="cpu", wait=True) is not None


@pytest.mark.skipif(importlib.util.find_spec("nncf") is None,
                    reason="bratsunet[fast] (OpenVINO, NNCF) is not installed")
def test_int8_in_slicer_is_the_command_lines_int8(scene, logic, phantom_cases, small_model, tmp_path, monkeypatch):
    """The panel's precision choice runs what ``bratsunet segment --precision int8`` runs: the same labels."""
    paths = phantom_cases["BraTS20_Training_001"]
    volumes = _load_case(paths, "BraTS20_Training_001")
    job = logic.segment(**volumes, model=str(small_model), device="cpu", precision="int8", show3D=False)
    finish(job)
    assert job.result["backend"] == "openvino, int8"
    actual = _segmentation_as_file(job.result["segmentation"], volumes["flair"], tmp_path / "slicer_labels.nii")
    # The command line in a process of its own: OpenVINO's thread pools must not live in the test process.
    output = tmp_path / "cli_labels.nii.gz"
    command = [sys.executable, "-m", "BratsUNetLib", "segment", "--model", str(small_model), "--output", str(output),
               "--device", "cpu", "--progress", "none", "--precision", "int8",
               *(f"--{modality}={paths[modality]}" for modality in scene_io.MODALITIES)]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    _assert_same_labels(actual, nibabel.load(str(output)))
