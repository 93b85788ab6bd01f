"""Training from the scene: case discovery, a short training run through the logic, cancel and resume."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import slicer
from BratsUNetSlicer import cases, results, scene_io, training
from BratsUNetSlicer.worker import WorkerClient
from jobwait import wait_until

from BratsUNetLib.models.checkpoint import load_checkpoint
from BratsUNetLib.errors import BratsUNetError

CASE_IDS = [f"BraTS20_Training_{i:03d}" for i in range(11, 15)]
HELD_WORKER = Path(__file__).resolve().parent / "held_worker.py"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Four generated 32³ cases in the BraTS layout (modality and "seg" -> path), by case id."""
    from BratsUNetLib.phantoms.generate import generate_case, write_case

    folder = tmp_path_factory.mktemp("training_cases")
    return {case_id: write_case(generate_case((32, 32, 32), seed=index), folder, case_id)
            for index, case_id in enumerate(CASE_IDS)}


def _load(scene, paths: dict, case_id: str, label: str = "segmentation") -> dict:
    """Load a case as a user would: four volumes, and the label as a segmentation (BraTS segment names) or as a
    label map volume."""
    nodes = {m: scene_io.load_volume(paths[m], f"{case_id}_{m}") for m in scene_io.MODALITIES}
    if label == "segmentation":
        nodes["label"] = results.import_segmentation(paths["seg"], nodes["flair"], "brats2020",
                                                     name=f"{case_id}_seg")
    elif label == "labelmap":
        nodes["label"] = scene_io.load_volume(paths["seg"], f"{case_id}_seg", labelmap=True)
    return nodes


@pytest.fixture
def loaded(scene, generated):
    """The four cases in the scene: three with segmentation nodes, the last with a label map volume."""
    return {case_id: _load(scene, generated[case_id], case_id, "labelmap" if case_id == CASE_IDS[-1]
                           else "segmentation") for case_id in CASE_IDS}


def test_discovery_finds_exactly_the_loaded_cases(scene, loaded):
    found = cases.discover_cases(scene)
    assert [case.name for case in found] == CASE_IDS
    for case in found:
        assert case.usable, case.problems
        assert case.volumes == {m: loaded[case.name][m] for m in scene_io.MODALITIES}
        assert case.label is loaded[case.name]["label"]


def test_a_case_missing_a_modality_is_reported_not_dropped(scene, generated, loaded):
    paths = generated[CASE_IDS[0]]
    for modality in ("flair", "t1", "t2"):  # no T1ce
        scene_io.load_volume(paths[modality], f"BraTS20_Training_099_{modality}")
    scene_io.load_volume(paths["seg"], "BraTS20_Training_099_seg", labelmap=True)
    scene_io.load_volume(paths["seg"], "BraTS20_Training_098_seg", labelmap=True)  # a label alone

    found = {case.name: case for case in cases.discover_cases(scene)}

    assert set(found) == {*CASE_IDS, "BraTS20_Training_099", "BraTS20_Training_098"}
    assert found["BraTS20_Training_099"].problems == ["missing T1ce"]
    assert found["BraTS20_Training_098"].problems == ["missing FLAIR, T1, T1ce, T2"]
    assert "BraTS20_Training_099: not used, missing T1ce" in cases.describe_cases(list(found.values()))


def test_cases_are_grouped_by_subject_hierarchy_folder(scene, generated):
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    for index, case_id in enumerate(CASE_IDS[:2]):
        folder = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), f"Patient {index}")
        names = {"flair": "FLAIR", "t1": "T1", "t1ce": "T1ce", "t2": "T2"}
        for modality, name in names.items():
            node = scene_io.load_volume(generated[case_id][modality], name)
            hierarchy.CreateItem(folder, node)  # the desktop application makes an item per node
        hierarchy.CreateItem(folder, scene_io.load_volume(generated[case_id]["seg"], "seg", labelmap=True))
    found = cases.discover_cases(scene)
    assert len(found) == 2 and all(case.usable for case in found)
    assert found[0].volumes["flair"] is not found[1].volumes["flair"]


def test_segments_and_label_maps_become_brats_labels(scene, generated, loaded, tmp_path):
    found = cases.discover_cases(scene)
    for case in (found[0], found[-1]):  # a segmentation node, a label map volume
        entry = cases.export_case(case, tmp_path)
        import nibabel

        written = nibabel.as_closest_canonical(nibabel.load(entry["label"]))
        original = nibabel.as_closest_canonical(nibabel.load(str(generated[case.name]["seg"])))
        np.testing.assert_allclose(written.affine, original.affine, atol=1e-4)
        np.testing.assert_array_equal(np.asarray(written.dataobj), np.asarray(original.dataobj))
        # Unchanged volumes are used from their files, as segmentation uses them.
        assert entry["image"] == [str(generated[case.name][m]) for m in scene_io.MODALITIES]


def test_volumes_edited_in_slicer_are_exported_for_training(scene, loaded, tmp_path):
    case = cases.discover_cases(scene)[0]
    slicer.util.arrayFromVolumeModified(case.volumes["t1ce"])
    entry = cases.export_case(case, tmp_path)
    assert entry["image"][2] == str(tmp_path / case.name / f"{case.name}_t1ce.nii.gz")
    assert (tmp_path / case.name / f"{case.name}_t1ce.nii.gz").is_file()


@pytest.mark.parametrize("name, region", [
    ("Necrotic tumor core", "NCR"), ("necrotic / non-enhancing core", "NCR"), ("NCR", "NCR"),
    ("Peritumoral edema", "ED"), ("Oedema", "ED"), ("Enhancing tumor", "ET"), ("Label_4", "ET"), ("2", "ED"),
    ("Segment_1", None), ("Brain", None),
])
def test_segment_names_are_read_as_brats_sub_regions(name, region):
    assert cases.segment_region(name) == region


def _settings(epochs: int) -> training.TrainingOptions:
    return training.TrainingOptions(epochs=epochs, patch_size=32, validation_cases=1, network="small", seed=1,
                                     device="cpu")


def test_training_two_epochs_writes_checkpoints_fills_the_plot_table_and_segments(scene, logic, loaded, tmp_path):
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "training")
    epochs = []

    job = logic.train(str(tmp_path), _settings(2), table=table,
                      onEvent=lambda e: epochs.append(e["epoch"]) if e["event"] == "epoch" else None)
    model = logic.waitFor(job)["model"]

    work_dir = tmp_path / training.CONFIG_NAME
    assert (work_dir / "model.pth").is_file() and model.startswith(str(work_dir))
    with open(work_dir / "training_log.csv") as log:
        rows = list(csv.DictReader(log))
    assert [int(float(row["epoch"])) for row in rows] == [1, 2] == epochs
    assert table.GetNumberOfRows() == 2
    assert [table.GetCellText(r, 0) for r in range(2)] == ["1", "2"]
    losses = [float(table.GetCellText(r, 1)) for r in range(2)]
    assert losses == pytest.approx([float(row["loss"]) for row in rows], rel=1e-5)
    chart = job.result["chart"]
    assert chart.GetNumberOfPlotSeriesNodes() == 5
    config = json.loads((tmp_path / f"{training.CONFIG_NAME}.json").read_text())
    assert len(config["training_filenames"]) == 3 and len(config["validation_filenames"]) == 1
    assert config["model"]["name"] == "DynUNet" and config["dataset"]["labels"] == [2, 1, 4]

    assert logic.models.get(model).trained_here  # registered: selectable at once, with its card
    card = logic.models.card(model)
    assert "cases 3" in card and "epochs 2" in card and "validation cases 1" in card
    case = loaded[CASE_IDS[0]]
    node = logic.segment(*(case[m] for m in scene_io.MODALITIES), model=model, device="cpu", wait=True)
    assert node.GetSegmentation().GetNumberOfSegments() == 3

    with pytest.raises(BratsUNetError, match="already holds a training run"):
        logic.train(str(tmp_path), _settings(2))


def test_cancel_keeps_the_last_checkpoint_and_resume_continues(scene, logic, training_worker, loaded, tmp_path):
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "training")
    # A real worker held right after it reported epoch 1 (saved) until it is killed: Cancel lands between epochs
    # 1 and 2 on any machine, however fast the run (a free-running one could end all 4 epochs first).
    logic.trainingWorker = held = WorkerClient([sys.executable, str(HELD_WORKER), "epoch", "1"])
    try:
        job = logic.train(str(tmp_path), _settings(4), table=table)
        wait_until(job, lambda: any(event["event"] == "epoch" for event in job.events), "epoch event")
        job.cancel()
    finally:
        held.close()
        logic.trainingWorker = training_worker
    assert job.state == "cancelled"
    work_dir = tmp_path / training.CONFIG_NAME
    assert (work_dir / "model.pth").is_file()
    assert logic.models.get(job.result["model"]) is not None
    done = load_checkpoint(work_dir / "model.pth")["epoch"]
    assert done == 1

    for nodes in loaded.values():  # resuming needs only the folder (e.g. after restarting Slicer)
        for node in nodes.values():
            scene.RemoveNode(node)
    assert cases.discover_cases(scene) == []
    resumed_epochs = []
    resumed = logic.train(str(tmp_path), _settings(5), resume=True, table=table,
                          onEvent=lambda e: resumed_epochs.append(e["epoch"]) if e["event"] == "epoch" else None)
    logic.waitFor(resumed)

    with open(work_dir / "training_log.csv") as log:  # one more epoch than first asked for
        assert [int(float(row["epoch"])) for row in csv.DictReader(log)] == [1, 2, 3, 4, 5]
    assert resumed_epochs == list(range(done + 1, 6))
    assert [table.GetCellText(r, 0) for r in range(table.GetNumberOfRows())] == ["1", "2", "3", "4", "5"]


def test_training_needs_usable_cases_and_a_folder(scene, logic, generated, tmp_path):
    with pytest.raises(BratsUNetError, match="Choose a folder"):
        logic.train("", _settings(1))
    _load(scene, generated[CASE_IDS[0]], CASE_IDS[0])
    with pytest.raises(BratsUNetError, match="found 1"):
        logic.train(str(tmp_path), _settings(1))
    with pytest.raises(BratsUNetError, match="no training run to resume"):
        logic.train(str(tmp_path), _settings(1), resume=True)
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 0  # nothing made for a run that did not start


def test_fine_tuning_starts_from_an_existing_model(scene, logic, loaded, small_model, tmp_path):
    job = logic.train(str(tmp_path), _settings(1), pretrainedModel=str(small_model))
    assert job.argv[job.argv.index("--pretrained_model_filename") + 1] == str(small_model)
    model = logic.waitFor(job)["model"]
    assert load_checkpoint(model)["epoch"] == 1
    assert job.result["table"].GetNumberOfRows() == 1  # a table is made when none is given


# What ``training_config`` wrote before it called :func:`BratsUNetLib.config.brats.brats_training_config` (computed
# with the earlier code): ``bratsunet_slicer.json`` stays the same, byte for byte.
SMALL_CONFIG = {'model': {'name': 'DynUNet',
           'spatial_dims': 3,
           'in_channels': 4,
           'out_channels': 3,
           'filters': [8, 16, 32, 64],
           'strides': [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
           'kernel_size': [[3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
           'upsample_kernel_size': [[2, 2, 2], [2, 2, 2], [2, 2, 2]],
           'deep_supervision': False},
 'optimizer': {'name': 'Adam', 'lr': 0.01},
 'loss': {'name': 'DiceLoss', 'include_background': True, 'sigmoid': True},
 'scheduler': {'name': 'ReduceLROnPlateau', 'patience': 10, 'factor': 0.5, 'min_lr': 1e-08},
 'dataset': {'name': 'SegmentationDataset',
             'desired_shape': [32, 32, 32],
             'labels': [2, 1, 4],
             'setup_label_hierarchy': True,
             'normalization': 'NormalizeIntensityD',
             'normalization_kwargs': {'channel_wise': True, 'nonzero': False},
             'resample': True,
             'crop_foreground': True},
 'training': {'batch_size': 2,
              'validation_batch_size': 1,
              'n_epochs': 7,
              'save_best': True,
              'amp': False,
              'early_stopping_patience': None},
 'training_filenames': [{'image': ['/run/cases/case0/flair.nii.gz',
                                   '/run/cases/case0/t1.nii.gz',
                                   '/run/cases/case0/t1ce.nii.gz',
                                   '/run/cases/case0/t2.nii.gz'],
                         'label': '/run/cases/case0/seg.nii.gz'}],
 'validation_filenames': [{'image': ['/run/cases/case1/flair.nii.gz',
                                     '/run/cases/case1/t1.nii.gz',
                                     '/run/cases/case1/t1ce.nii.gz',
                                     '/run/cases/case1/t2.nii.gz'],
                           'label': '/run/cases/case1/seg.nii.gz'}]}

BRATS_CONFIG = {'model': {'name': 'DynUNet',
           'spatial_dims': 3,
           'in_channels': 4,
           'out_channels': 3,
           'filters': [64, 96, 128, 192, 256, 384],
           'strides': [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
           'kernel_size': [[3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
           'upsample_kernel_size': [[2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
           'deep_supervision': False},
 'optimizer': {'name': 'Adam', 'lr': 0.001},
 'loss': {'name': 'DiceLoss', 'include_background': True, 'sigmoid': True},
 'scheduler': {'name': 'ReduceLROnPlateau', 'patience': 10, 'factor': 0.5, 'min_lr': 1e-08},
 'dataset': {'name': 'SegmentationDataset',
             'desired_shape': [128, 128, 128],
             'labels': [2, 1, 4],
             'setup_label_hierarchy': True,
             'normalization': 'NormalizeIntensityD',
             'normalization_kwargs': {'channel_wise': True, 'nonzero': False},
             'resample': True,
             'crop_foreground': True},
 'training': {'batch_size': 1,
              'validation_batch_size': 1,
              'n_epochs': 50,
              'save_best': True,
              'amp': False,
              'early_stopping_patience': None},
 'training_filenames': [{'image': ['/run/cases/case0/flair.nii.gz',
                                   '/run/cases/case0/t1.nii.gz',
                                   '/run/cases/case0/t1ce.nii.gz',
                                   '/run/cases/case0/t2.nii.gz'],
                         'label': '/run/cases/case0/seg.nii.gz'},
                        {'image': ['/run/cases/case1/flair.nii.gz',
                                   '/run/cases/case1/t1.nii.gz',
                                   '/run/cases/case1/t1ce.nii.gz',
                                   '/run/cases/case1/t2.nii.gz'],
                         'label': '/run/cases/case1/seg.nii.gz'}]}

CASE_FILES = [{"image": [f"/run/cases/case{i}/{m}.nii.gz" for m in ("flair", "t1", "t1ce", "t2")],
               "label": f"/run/cases/case{i}/seg.nii.gz"} for i in range(2)]


@pytest.mark.parametrize(("options", "validation", "expected"), [
    (training.TrainingOptions(epochs=7, learning_rate=0.01, batch_size=2, patch_size=32, validation_cases=1,
                              network="small"), CASE_FILES[1:], SMALL_CONFIG),
    (training.TrainingOptions(network="brats", patch_size=128), [], BRATS_CONFIG),
], ids=["small", "brats-no-validation"])
def test_training_config_file_is_unchanged(options, validation, expected):
    """The config a training run writes is the text it was (the same run can be repeated on a cluster)."""
    training_files = CASE_FILES[:1] if validation else CASE_FILES
    config = training.training_config(options, training_files, validation)
    assert json.dumps(config, indent=2) == json.dumps(expected, indent=2)


def test_training_settings_is_still_the_options_class():
    """``training.TrainingSettings``, the README's console name, still makes the panel's training options."""
    assert training.TrainingSettings is training.TrainingOptions
    assert training.TrainingSettings(epochs=3).epochs == 3


def test_a_segmentation_runs_while_a_training_runs_and_each_cancels_alone(scene, logic, loaded, small_model,
                                                                          tmp_path):
    # The training is held after its first epoch (a real worker, see held_worker.py) for as long as the test needs.
    logic.trainingWorker = held = WorkerClient([sys.executable, str(HELD_WORKER), "epoch", "1"])
    volumes = {m: loaded[CASE_IDS[0]][m] for m in scene_io.MODALITIES}
    try:
        trainingJob = logic.train(str(tmp_path), _settings(4))
        wait_until(trainingJob, lambda: any(event["event"] == "epoch" for event in trainingJob.events), "epoch event")
        node = logic.segment(**volumes, model=str(small_model), device="cpu", wait=True)  # beside the training
        assert node.GetSegmentation().GetNumberOfSegments() == 3
        assert not trainingJob.poll()  # still training
        with pytest.raises(BratsUNetError, match=r"already running a job \(a training\)"):
            logic.train(str(tmp_path / "other"), _settings(1))
        segmenting = logic.segment(**volumes, model=str(small_model), device="cpu", testTimeAugmentation=True)
        segmenting.cancel()  # cancelling the segmentation leaves the training running
        assert segmenting.state == "cancelled" and not trainingJob.poll()
        trainingJob.cancel()
        assert trainingJob.state == "cancelled"
        assert logic.segment(**volumes, model=str(small_model), device="cpu", wait=True) is not None  # the
        # segmentation worker is unharmed by the training's cancel
    finally:
        held.close()


def test_every_logic_of_a_slicer_process_shares_its_workers(module):
    first, second = module.BratsUNetLogic(), module.BratsUNetLogic()
    assert first.worker is second.worker and first.trainingWorker is second.trainingWorker
    assert first.worker is not first.trainingWorker
