"""Scene volumes to files and back through Slicer's own readers and writers, whatever the affine's handedness."""

from __future__ import annotations

import nibabel
import numpy as np
import pytest
import slicer
import vtk
from BratsUNetSlicer import scene_io

from BratsUNetLib.errors import ImageError

AFFINES = {
    "right-handed": np.array([[1.2, 0, 0, -20], [0, 1.0, 0, 10], [0, 0, 1.5, 3], [0, 0, 0, 1]]),
    "left-handed": np.array([[-1.0, 0, 0, 30], [0, 1.2, 0, -5], [0, 0, 1.5, 7], [0, 0, 0, 1]]),
    "LPS (BraTS 2020)": np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239], [0, 0, 1.0, 0], [0, 0, 0, 1]]),
    "oblique": np.array([[0.9848, -0.1736, 0, 2], [0.1736, 0.9848, 0, -3], [0, 0, 2.0, 1], [0, 0, 0, 1]]),
}


def _canonical(path):
    image = nibabel.as_closest_canonical(nibabel.load(str(path)))
    return np.asarray(image.dataobj), image.affine


@pytest.mark.parametrize("kind", AFFINES)
def test_volume_written_from_the_scene_has_the_same_voxels_at_the_same_points(scene, tmp_path, kind):
    data = np.random.default_rng(0).integers(0, 1000, size=(12, 10, 8)).astype(np.int16)
    source = tmp_path / "source.nii.gz"
    nibabel.save(nibabel.Nifti1Image(data, AFFINES[kind]), str(source))
    node = scene_io.load_volume(source, "BraTS20_Training_005_flair")
    nodes_before = scene.GetNumberOfNodes()

    written = scene_io.export_volume(node, tmp_path / "exported.nii")

    assert scene.GetNumberOfNodes() == nodes_before
    expected_data, expected_affine = _canonical(source)
    actual_data, actual_affine = _canonical(written)
    np.testing.assert_allclose(actual_affine, expected_affine, atol=1e-4)
    np.testing.assert_array_equal(actual_data, expected_data)
    assert nibabel.load(str(written)).get_data_dtype() == np.int16


def test_a_linear_parent_transform_is_applied_to_the_written_geometry(scene, tmp_path):
    data = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    source = tmp_path / "t2.nii.gz"
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), str(source))
    node = scene_io.load_volume(source, "t2")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = vtk.vtkMatrix4x4()
    shift.SetElement(0, 3, 25.0)
    transform.SetMatrixTransformToParent(shift)
    node.SetAndObserveTransformNodeID(transform.GetID())

    written = scene_io.export_volume(node, tmp_path / "t2_out.nii")

    image = nibabel.load(str(written))
    np.testing.assert_allclose(image.affine[:3, 3], [25.0, 0, 0], atol=1e-4)
    np.testing.assert_array_equal(np.asarray(image.dataobj), data)
    assert node.GetParentTransformNode() is transform  # the scene is not hardened


def _volume(array, name="vol", cls="vtkMRMLScalarVolumeNode"):
    return slicer.util.addVolumeFromArray(array, name=name, nodeClassName=cls)


@pytest.mark.parametrize("make, message", [
    (lambda: None, "No FLAIR volume is selected"),
    (lambda: _volume(np.zeros((8, 8, 8), np.int16)), "is empty"),
    (lambda: _volume(np.arange(64, dtype=np.int16).reshape(1, 8, 8)), "is 2-D"),
    (lambda: _volume(np.random.default_rng(0).random((6, 6, 6, 3)).astype(np.float32),
                     cls="vtkMRMLVectorVolumeNode"), "not a scalar volume"),
])
def test_unusable_inputs_are_refused_with_a_message_that_names_them(scene, make, message):
    node = make()
    with pytest.raises(ImageError, match=message) as raised:
        scene_io.check_volume(node, "FLAIR")
    assert "\n" not in str(raised.value)
    if node is not None:
        assert node.GetName() in str(raised.value)


def test_a_non_linear_transform_is_refused(scene):
    node = _volume(np.arange(64, dtype=np.int16).reshape(4, 4, 4), name="flair")
    transform = scene.AddNewNodeByClass("vtkMRMLGridTransformNode")
    node.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(ImageError, match="non-linear transform"):
        scene_io.check_volume(node, "FLAIR")


def test_overlap_of_boxes():
    assert scene_io.boxes_overlap([0, 10, 0, 10, 0, 10], [5, 15, 5, 15, 5, 15])
    assert not scene_io.boxes_overlap([0, 10, 0, 10, 0, 10], [20, 30, 0, 10, 0, 10])


def test_an_unchanged_volume_is_given_to_the_worker_as_its_own_file(scene, tmp_path):
    """A re-export would reverse a left-handed file's K axis; the source file keeps the array the network saw."""
    data = np.random.default_rng(1).integers(0, 100, size=(6, 5, 4)).astype(np.int16)
    source = tmp_path / "left.nii.gz"
    nibabel.save(nibabel.Nifti1Image(data, AFFINES["left-handed"]), str(source))
    node = scene_io.load_volume(source, "flair")

    assert scene_io.input_file(node, tmp_path / "export.nii") == source
    assert not (tmp_path / "export.nii").exists()

    slicer.util.arrayFromVolumeModified(node)  # edited in Slicer: the file no longer holds what the node shows
    exported = scene_io.input_file(node, tmp_path / "export.nii")
    assert exported == tmp_path / "export.nii"
    expected_data, expected_affine = _canonical(source)
    actual_data, actual_affine = _canonical(exported)
    np.testing.assert_allclose(actual_affine, expected_affine, atol=1e-4)
    np.testing.assert_array_equal(actual_data, expected_data)


def test_a_transformed_or_array_made_volume_is_exported(scene, tmp_path):
    source = tmp_path / "t1.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.arange(60, dtype=np.int16).reshape(5, 4, 3), np.eye(4)), str(source))
    node = scene_io.load_volume(source, "t1")
    node.SetAndObserveTransformNodeID(scene.AddNewNodeByClass("vtkMRMLLinearTransformNode").GetID())
    assert scene_io.source_file(node) is None
    assert scene_io.source_file(_volume(np.arange(27, dtype=np.int16).reshape(3, 3, 3))) is None
