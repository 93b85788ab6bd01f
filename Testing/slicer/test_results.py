"""Results in the scene: segments with names, colours and terminology, the volumes table, probability maps,
and the segmentation run's background path against a stand-in worker."""

from __future__ import annotations

import nibabel
import numpy as np
import pytest
import slicer
from BratsUNetSlicer import results, scene_io, segment
from BratsUNetSlicer.worker import WorkerClient
from jobwait import finish, wait_until

from BratsUNetLib.errors import ImageError

SEGMENTS = ["Necrotic tumor core (label 1)", "Peritumoral edema (label 2)", "Enhancing tumor (label 4)"]


@pytest.fixture
def inputs(scene, phantom_cases):
    case = phantom_cases["BraTS20_Training_002"]  # left-handed files
    return {m: scene_io.load_volume(case[m], f"BraTS20_Training_002_{m}") for m in scene_io.MODALITIES}


def _labels_on_grid_of(node, tmp_path, values=(1, 2, 4), name="labels.nii.gz"):
    """A label map written on ``node``'s grid as the worker would (from the file Slicer exports)."""
    reference = scene_io.export_volume(node, tmp_path / "reference.nii")
    image = nibabel.load(str(reference))
    labels = np.zeros(image.shape, np.uint8)
    labels[3:12, 4:13, 5:14] = values[1]
    labels[5:10, 6:11, 7:12] = values[0]
    labels[6:8, 7:9, 8:10] = values[2]
    path = tmp_path / name
    nibabel.save(nibabel.Nifti1Image(labels, image.affine), str(path))
    return path, labels, image.affine


def _segment_names(node):
    content = node.GetSegmentation()
    return [content.GetNthSegment(i).GetName() for i in range(content.GetNumberOfSegments())]


def _label_map_from_segments(node, reference, values=(1, 2, 4)):
    """The segmentation as a label map on the reference grid (Slicer's K, J, I order), value by segment ID."""
    labels = np.zeros(slicer.util.arrayFromVolume(reference).shape, np.uint8)
    for segment_id, value in zip(("NecroticTumorCore", "PeritumoralEdema", "EnhancingTumor"), values):
        labels[slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, reference) > 0] = value
    return labels


def test_label_map_becomes_named_coloured_segments_on_the_reference_geometry(scene, inputs, tmp_path):
    flair = inputs["flair"]
    path, _labels, _affine = _labels_on_grid_of(flair, tmp_path)
    nodes_before = scene.GetNumberOfNodes()

    node = results.import_segmentation(path, flair, "brats2020")

    assert _segment_names(node) == SEGMENTS
    assert node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole()) is flair
    content = node.GetSegmentation()
    colours = [tuple(round(c, 3) for c in content.GetSegment(content.GetSegmentIdBySegmentName(n)).GetColor())
               for n in SEGMENTS]
    assert colours == [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (1.0, 1.0, 0.0)]
    terminology = content.GetSegment("NecroticTumorCore").GetTerminology()
    assert "SCT^6574001^Necrosis" in terminology and "SCT^12738006^Brain" in terminology
    assert "SCT^79654002^Edema" in content.GetSegment("PeritumoralEdema").GetTerminology()
    # Only the segmentation (and its display node) were added: the temporary label map is gone.
    added = sorted(scene.GetNthNode(i).GetClassName() for i in range(nodes_before, scene.GetNumberOfNodes()))
    assert added == ["vtkMRMLSegmentationDisplayNode", "vtkMRMLSegmentationNode"]
    # Same voxels as the file: compare in Slicer's array order through the file Slicer would read.
    expected = slicer.util.arrayFromVolume(scene_io.load_volume(path, "expected", labelmap=True))
    np.testing.assert_array_equal(_label_map_from_segments(node, flair), expected)
    assert {int(v) for v in np.unique(expected)} == {0, 1, 2, 4}


def test_segmentation_is_placed_beside_the_inputs_in_the_subject_hierarchy(scene, inputs, tmp_path):
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient 2")
    flair = inputs["flair"]
    hierarchy.CreateItem(patient, flair)  # the desktop application makes an item for every loaded node
    path, _labels, _affine = _labels_on_grid_of(flair, tmp_path)

    node = results.import_segmentation(path, flair, "brats2020")

    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == patient


def test_importing_again_refills_the_same_node(scene, inputs, tmp_path):
    flair = inputs["flair"]
    path, _labels, _affine = _labels_on_grid_of(flair, tmp_path)
    node = results.import_segmentation(path, flair, "brats2020")
    count = scene.GetNumberOfNodes()
    empty = tmp_path / "empty.nii.gz"
    image = nibabel.load(str(path))
    nibabel.save(nibabel.Nifti1Image(np.zeros(image.shape, np.uint8), image.affine), str(empty))

    again = results.import_segmentation(empty, flair, "brats2020", segmentation=node)

    assert again is node and scene.GetNumberOfNodes() == count
    assert _segment_names(node) == SEGMENTS
    assert not _label_map_from_segments(node, flair).any()


def test_brats2021_labels_use_3_for_enhancing_tumor(scene, inputs, tmp_path):
    flair = inputs["flair"]
    path, _labels, _affine = _labels_on_grid_of(flair, tmp_path, values=(1, 2, 3))
    node = results.import_segmentation(path, flair, "brats2021")
    expected = slicer.util.arrayFromVolume(scene_io.load_volume(path, "expected", labelmap=True))
    np.testing.assert_array_equal(_label_map_from_segments(node, flair, values=(1, 2, 3)), expected)
    # The scheme is what the user sees: in the segment names, and in the values the segments export as.
    assert _segment_names(node) == [*SEGMENTS[:2], "Enhancing tumor (label 3)"]
    content = node.GetSegmentation()
    assert [content.GetNthSegment(i).GetLabelValue() for i in range(3)] == [1, 2, 3]


def test_the_result_is_shown_in_3d_as_closed_surfaces_and_can_be_hidden(scene, inputs, tmp_path):
    flair = inputs["flair"]
    path, _labels, _affine = _labels_on_grid_of(flair, tmp_path)
    node = results.import_segmentation(path, flair, "brats2020")
    surface = slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName()

    results.show_in_3d(node, True)
    assert node.GetSegmentation().ContainsRepresentation(surface)
    polydata = node.GetSegmentation().GetSegment("PeritumoralEdema").GetRepresentation(surface)
    assert polydata.GetNumberOfPoints() > 0  # a real surface around the edema
    assert node.GetDisplayNode().GetVisibility3D()
    results.show_in_3d(node, False)
    assert not node.GetDisplayNode().GetVisibility3D()
    assert node.GetDisplayNode().GetVisibility2D()  # the slice views still show it

    # Refilled with a new result: the old surfaces go and are made again from the new labels.
    results.show_in_3d(node, True)
    empty = tmp_path / "empty.nii.gz"
    image = nibabel.load(str(path))
    nibabel.save(nibabel.Nifti1Image(np.zeros(image.shape, np.uint8), image.affine), str(empty))
    results.import_segmentation(empty, flair, "brats2020", segmentation=node)
    results.show_in_3d(node, True)
    polydata = node.GetSegmentation().GetSegment("PeritumoralEdema").GetRepresentation(surface)
    assert polydata is None or polydata.GetNumberOfPoints() == 0


def test_unexpected_label_values_are_refused_before_any_node_is_made(scene, inputs, tmp_path):
    flair = inputs["flair"]
    path, _labels, _affine = _labels_on_grid_of(flair, tmp_path, values=(1, 2, 7))
    count = scene.GetNumberOfNodes()
    with pytest.raises(ImageError, match=r"label values \[7\]"):
        results.import_segmentation(path, flair, "brats2020")
    assert scene.GetNumberOfNodes() == count


def test_volumes_table_lists_each_region_in_ml():
    table = slicer.vtkMRMLTableNode()
    volumes = {"WT": 12.5, "TC": 4.0, "ET": 1.5, "NCR": 2.5, "ED": 8.5}
    results.update_volumes_table(table, volumes)
    rows = {table.GetCellText(r, 0): float(table.GetCellText(r, 1)) for r in range(table.GetNumberOfRows())}
    assert rows == {"Necrotic tumor core (NCR)": 2.5, "Peritumoral edema (ED)": 8.5, "Enhancing tumor (ET)": 1.5,
                    "Tumor core (TC = NCR + ET)": 4.0, "Whole tumor (WT = NCR + ED + ET)": 12.5}
    results.update_volumes_table(table, {"WT": 1.0})
    assert table.GetNumberOfRows() == 1 and table.GetNumberOfColumns() == 2


@pytest.mark.parametrize("grid", ["exported by Slicer", "left-handed source file"])
def test_probability_maps_become_scalar_volumes_on_the_reference_grid(scene, inputs, phantom_cases, tmp_path,
                                                                      grid):
    flair = inputs["flair"]
    if grid == "exported by Slicer":
        reference = nibabel.load(str(scene_io.export_volume(flair, tmp_path / "reference.nii")))
    else:
        reference = nibabel.load(str(phantom_cases["BraTS20_Training_002"]["flair"]))
        assert np.linalg.det(reference.affine) < 0
    probabilities = np.random.default_rng(0).random((*reference.shape, 3)).astype(np.float32)
    path = tmp_path / "probabilities.nii.gz"
    nibabel.save(nibabel.Nifti1Image(probabilities, reference.affine), str(path))
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "tumor")

    nodes = results.import_probabilities(scene_io.read_channels(path, flair), segmentation, flair,
                                         ["WT", "TC", "ET"])

    assert [n.GetName() for n in nodes] == ["tumor WT probability", "tumor TC probability", "tumor ET probability"]
    for index, node in enumerate(nodes):
        assert scene_io.same_geometry(node, flair)
        written = nibabel.load(str(scene_io.export_volume(node, tmp_path / f"p{index}.nii")))
        expected = nibabel.Nifti1Image(probabilities[..., index], reference.affine)
        np.testing.assert_allclose(np.asarray(nibabel.as_closest_canonical(written).dataobj),
                                   np.asarray(nibabel.as_closest_canonical(expected).dataobj))
    assert results.import_probabilities(scene_io.read_channels(path, flair), segmentation, flair,
                                        ["WT", "TC", "ET"]) == nodes


def test_probability_maps_on_another_grid_are_refused(scene, inputs, tmp_path):
    path = tmp_path / "probabilities.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.zeros((5, 5, 5, 3), np.float32), np.eye(4)), str(path))
    with pytest.raises(ImageError, match="is not on the grid of"):
        scene_io.read_channels(path, inputs["flair"])


# -- the segmentation run through a stand-in worker --------------------------------------------------------------

CHANNELS = ["flair", "t1", "t1ce", "t2"]


def test_a_run_imports_the_segmentation_and_a_table_matching_the_voxel_counts(scene, inputs, fake_worker_command):
    worker = WorkerClient(fake_worker_command)
    seen = []
    try:
        job = segment.start(worker, inputs, "model.pth", "", CHANNELS, ["WT", "TC", "ET"],
                            segment.SegmentationOptions(), on_event=seen.append)
        finish(job)
    finally:
        worker.close()
    assert job.state == "succeeded", job.error
    assert [e["event"] for e in seen] == ["result", "done"]
    node, table = job.result["segmentation"], job.result["table"]
    assert _segment_names(node) == SEGMENTS
    labels = _label_map_from_segments(node, inputs["flair"])
    spacing = inputs["flair"].GetSpacing()
    voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000
    expected = {"Necrotic tumor core (NCR)": (labels == 1).sum(), "Peritumoral edema (ED)": (labels == 2).sum(),
                "Enhancing tumor (ET)": (labels == 4).sum(), "Tumor core (TC = NCR + ET)": np.isin(labels, (1, 4)).sum(),
                "Whole tumor (WT = NCR + ED + ET)": (labels > 0).sum()}
    rows = {table.GetCellText(r, 0): float(table.GetCellText(r, 1)) for r in range(table.GetNumberOfRows())}
    assert rows == pytest.approx({name: count * voxel_ml for name, count in expected.items()})
    assert min(expected.values()) > 0
    assert node.GetNodeReference(segment.TABLE_ROLE) is table


def test_a_result_that_misses_the_input_fails_with_a_message_and_adds_nothing(scene, inputs, fake_worker_command):
    worker = WorkerClient(fake_worker_command)
    count = scene.GetNumberOfNodes()
    try:
        job = segment.start(worker, inputs, "shifted.pth", "", CHANNELS, ["WT", "TC", "ET"],
                            segment.SegmentationOptions())
        finish(job)
    finally:
        worker.close()
    assert job.state == "failed"
    assert "does not overlap the input 'BraTS20_Training_002_flair'" in job.error
    assert scene.GetNumberOfNodes() == count


def test_cancel_leaves_the_scene_unchanged(scene, inputs, fake_worker_command):
    worker = WorkerClient(fake_worker_command)
    ids_before = [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]
    # The stand-in worker hangs on "hang": make the segment command line start with it.
    original_submit = worker.submit
    worker.submit = lambda argv, **kw: original_submit(["hang", *argv], **kw)
    try:
        job = segment.start(worker, inputs, "model.pth", "", CHANNELS, ["WT", "TC", "ET"],
                            segment.SegmentationOptions())
        # The stand-in reports its process ids, then is held until killed: the cancel lands while it runs.
        wait_until(job, lambda: bool(job.events), "message from the held worker")
        job.cancel()
    finally:
        worker.close()
    assert job.state == "cancelled"
    assert [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())] == ids_before


def test_a_model_with_other_inputs_is_refused_before_anything_runs(scene, inputs, fake_worker_command):
    from BratsUNetLib.errors import CheckpointError

    worker = WorkerClient(fake_worker_command)
    with pytest.raises(CheckpointError, match="expects the inputs flair, adc"):
        segment.start(worker, inputs, "model.pth", "", ["flair", "adc"], ["WT", "TC", "ET"],
                      segment.SegmentationOptions())
    assert worker.process_id is None


def test_a_missing_input_is_refused_before_anything_runs(scene, inputs, fake_worker_command):
    worker = WorkerClient(fake_worker_command)
    with pytest.raises(ImageError, match="No T1ce volume is selected"):
        segment.start(worker, dict(inputs, t1ce=None), "model.pth", "", CHANNELS, ["WT", "TC", "ET"],
                      segment.SegmentationOptions())
    assert worker.process_id is None


def test_the_status_line_gives_the_regions_volumes():
    from BratsUNetSlicer import results

    assert results.describe_volumes({"WT": 42.14, "TC": 12.0, "ET": 6.31, "ED": 30.1, "NCR": 5.7}) == \
        "WT 42.1 mL, TC 12.0 mL, ET 6.3 mL"
