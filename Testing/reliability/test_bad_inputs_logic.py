"""The bad-input matrix through ``BratsUNetLogic``: every row is one exception with a one-line message and an
unchanged scene.

The rows mirror :mod:`test_bad_inputs` (the command line), made the way the broken input reaches the Slicer
module: a file Slicer is asked to load, a volume node in the scene, a model or config file given to the logic, a
training folder, an output segmentation. The logic runs its real worker process (``python -m BratsUNetLib
worker``), as in Slicer. After each row the scene holds exactly the nodes it held before the call, and no file
that the call would have written exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from reliability_support import (
    BAD_INPUT_KINDS,
    MODALITIES,
    TINY_CONFIG,
    leftovers,
    load,
    malicious_checkpoint,
    save_nifti,
    snapshot,
    truncated_copy,
)

from BratsUNetLib.errors import BratsUNetError


@dataclass
class BadCall:
    """A logic call with one broken input, and what the exception's message must contain."""

    call: Callable[[], Any]
    names: str  # the file, node or config key the message must name
    fix: str  # a fragment of the suggested fix
    forbidden: list[Path] = field(default_factory=list)  # files that must not exist afterwards
    kept: tuple[Any, list[str]] | None = None  # a segmentation node and the segments it must keep
    cleanup: Callable[[], None] | None = None  # ends what the row started (e.g. a held job)


class Context:
    """The scene with the generated case loaded, the logic, the tiny models, and a folder for the row."""

    def __init__(self, folder: Path, case: dict[str, Path], models: dict[str, Path], logic, monkeypatch):
        from BratsUNetSlicer import scene_io

        self.folder, self.case, self.models, self.logic, self.monkeypatch = folder, case, models, logic, monkeypatch
        self.scene_io = scene_io
        self.volumes = {m: scene_io.load_volume(case[m], f"BraTS20_Training_007_{m}") for m in MODALITIES}

    def segment(self, model: Path | None = None, config: Path | None = None, **replaced) -> Callable[[], Any]:
        volumes = {**self.volumes, **replaced}
        return lambda: self.logic.segment(**volumes, model=str(model or self.models["model"]),
                                          config=str(config or ""), device="cpu", wait=True)

    def volume(self, array_kji: np.ndarray, name: str, like: str = "flair") -> Any:
        """A scalar volume from an array (Slicer's K, J, I order) on the grid of the case's ``like`` volume."""
        node = slicer.util.addVolumeFromArray(array_kji, name=name)
        node.CopyOrientation(self.volumes[like])
        return node

    def array(self, modality: str) -> np.ndarray:
        return slicer.util.arrayFromVolume(self.volumes[modality]).astype(np.float32)

    def config(self, **changes) -> Path:
        config = json.loads(json.dumps(TINY_CONFIG))
        config.update(changes)
        path = self.folder / "config.json"
        path.write_text(json.dumps(config))
        return path

    def load(self, path: Path, name: str) -> Callable[[], Any]:
        return lambda: self.scene_io.load_volume(path, name)

    def label(self, extra_value: int | None = None) -> Any:
        """The case's reference label map as a label map node named like the case (``extra_value`` in a corner)."""
        # The case's files are right-handed, so Slicer's (K, J, I) array is nibabel's transposed.
        labels = np.ascontiguousarray(load(self.case["seg"])[0].transpose(2, 1, 0)).astype(np.uint8)
        if extra_value is not None:
            labels[0:2, 0:2, 0:2] = extra_value
        node = slicer.util.addVolumeFromArray(labels, name="BraTS20_Training_007_seg",
                                              nodeClassName="vtkMRMLLabelMapVolumeNode")
        node.CopyOrientation(self.volumes["flair"])
        return node

    def train(self, folder: Path | None = None, **settings) -> Callable[[], Any]:
        from BratsUNetSlicer.training import TrainingOptions

        options = TrainingOptions(**{"epochs": 1, "patch_size": 16, "validation_cases": 0, **settings})
        return lambda: self.logic.train(str(folder or self.folder / "run"), options, wait=True)


# ------------------------------------------------------------------------------------------------- images

def missing_image(ctx: Context) -> BadCall:
    path = ctx.folder / "BraTS20_Training_007_t1.nii.gz"
    return BadCall(ctx.load(path, "t1"), str(path), "check that the file exists")


def not_an_image(ctx: Context) -> BadCall:
    path = ctx.folder / "t1.nii.gz"
    path.write_text("Patient: anonymous\nThis is a report, not an image.\n")
    return BadCall(ctx.load(path, "t1"), str(path), "check that the file exists")


def truncated_image(ctx: Context) -> BadCall:
    """Slicer loads what it can of a truncated file; segmenting it must fail, naming the file."""
    path = truncated_copy(ctx.case["t1ce"], ctx.folder / "BraTS20_Training_007_t1ce.nii.gz")
    node = ctx.scene_io.load_volume(path, "truncated_t1ce")
    return BadCall(ctx.segment(t1ce=node), str(path), "copy or export it again")


def four_d_image(ctx: Context) -> BadCall:
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "t2_two_volumes")
    node.CopyOrientation(ctx.volumes["t2"])
    slicer.util.updateVolumeFromArray(node, np.stack([ctx.array("t2")] * 2, axis=-1))
    return BadCall(ctx.segment(t2=node), "'t2_two_volumes'", "choose a single 3-D MRI volume")


def nan_voxels(ctx: Context) -> BadCall:
    flair = ctx.array("flair")
    flair[10, 10, 10:12] = np.nan
    node = ctx.volume(flair, "flair_with_nan")
    return BadCall(ctx.segment(flair=node), "'flair_with_nan'", "replace them")


def infinite_voxels(ctx: Context) -> BadCall:
    t1 = ctx.array("t1")
    t1[5, 5, 5] = np.inf
    node = ctx.volume(t1, "t1_with_inf", like="t1")
    return BadCall(ctx.segment(t1=node), "'t1_with_inf'", "replace them")


def all_zero_channel(ctx: Context) -> BadCall:
    node = ctx.volume(np.zeros_like(ctx.array("t1ce")), "t1ce_zero", like="t1ce")
    return BadCall(ctx.segment(t1ce=node), "'t1ce_zero'", "choose the MRI volume")


# ----------------------------------------------------------------------------------------------- geometry

def fields_of_view_apart(ctx: Context) -> BadCall:
    node = ctx.volume(ctx.array("t2"), "t2_elsewhere", like="t2")
    origin = np.array(node.GetOrigin()) + 1000.0
    node.SetOrigin(*origin)
    return BadCall(ctx.segment(t2=node), "'t2_elsewhere'", "belong to the same case")


def sheared_image(ctx: Context) -> BadCall:
    array, affine = load(ctx.case["flair"])
    affine[0, 1] += 0.3
    path = save_nifti(ctx.folder / "flair_sheared.nii.gz", array, affine)
    return BadCall(ctx.load(path, "flair_sheared"), str(path), "check that the file exists")


# ------------------------------------------------------------------------------------------------- models

def model_with_other_channel_count(ctx: Context) -> BadCall:
    config = json.loads(ctx.models["config"].read_text())
    config["model"]["in_channels"] = 2
    path = ctx.folder / "config_two_channels.json"
    path.write_text(json.dumps(config))
    return BadCall(ctx.segment(model=ctx.models["original"], config=path), str(ctx.models["original"]),
                   "use the config the checkpoint was trained with")


def model_needing_another_image(ctx: Context) -> BadCall:
    return BadCall(ctx.segment(model=ctx.models["five_channels"]), str(ctx.models["five_channels"]),
                   "Choose a model trained on those")


# ------------------------------------------------------------------------------------------------- labels

def label_outside_configured_labels(ctx: Context) -> BadCall:
    ctx.label(extra_value=7)
    return BadCall(ctx.train(), "'BraTS20_Training_007_seg'", "BraTS labels are 1",
                   forbidden=[ctx.folder / "run" / "cases"])


# ------------------------------------------------------------------------------------------------ configs

def _original_with(ctx: Context, **changes) -> Callable[[], Any]:
    """Describe the original checkpoint with a config changed as given (the logic reads it before segmenting)."""
    return ctx.segment(model=ctx.models["original"], config=ctx.config(**changes))


def config_unknown_block(ctx: Context) -> BadCall:
    return BadCall(_original_with(ctx, modle=TINY_CONFIG["model"]), "modle", "did you mean 'model'")


def config_unknown_key(ctx: Context) -> BadCall:
    return BadCall(_original_with(ctx, training={"n_epoch": 3}), "training.n_epoch", "did you mean 'n_epochs'")


def config_unknown_name(ctx: Context) -> BadCall:
    return BadCall(_original_with(ctx, optimizer={"name": "Adamm"}), "optimizer.name", "did you mean 'Adam'")


def config_wrong_type(ctx: Context) -> BadCall:
    return BadCall(_original_with(ctx, training={"batch_size": "two"}), "training.batch_size",
                   "expected a positive integer")


# ---------------------------------------------------------------------------------------------- checkpoints

def truncated_checkpoint(ctx: Context) -> BadCall:
    path = truncated_copy(ctx.models["model"], ctx.folder / "model_truncated.pth", 0.5)
    return BadCall(ctx.segment(model=path), str(path), "incomplete download")


def checkpoint_of_another_format(ctx: Context) -> BadCall:
    path = ctx.folder / "model.pth"
    shutil.copyfile(ctx.case["flair"], path)
    return BadCall(ctx.segment(model=path), str(path), "not a valid checkpoint")


def checkpoint_that_would_run_code(ctx: Context) -> BadCall:
    marker = ctx.folder / "created_by_the_checkpoint.txt"
    path = malicious_checkpoint(ctx.folder / "model.pth", marker)
    return BadCall(ctx.segment(model=path), str(path), "only plain weights are ever loaded", forbidden=[marker])


# ------------------------------------------------------------------------------------------------ outputs

def training_folder_is_a_file(ctx: Context) -> BadCall:
    ctx.label()
    path = ctx.folder / "run"
    path.write_text("not a folder")
    return BadCall(ctx.train(path), str(path), "choose another output location")


def training_folder_not_writable(ctx: Context) -> BadCall:
    ctx.label()
    if os.geteuid() == 0:
        path = Path("/proc/bratsunet_training")  # permissions do not stop root; /proc refuses new files to all
    else:
        parent = ctx.folder / "locked"
        parent.mkdir()
        parent.chmod(0o500)
        path = parent / "run"
    return BadCall(ctx.train(path), str(path), "choose another output location")


def full_disk_while_exporting(ctx: Context) -> BadCall:
    """An edited volume is exported for the worker, and the disk is full."""
    node = ctx.volume(ctx.array("flair"), "edited_flair")

    class FullDisk(slicer.vtkMRMLVolumeArchetypeStorageNode):
        def WriteData(self, node):
            return 0

    ctx.monkeypatch.setattr(slicer, "vtkMRMLVolumeArchetypeStorageNode", FullDisk)
    return BadCall(ctx.segment(flair=node), "'edited_flair'", "check the free space")


def existing_user_segmentation(ctx: Context) -> BadCall:
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my corrected tumour")
    node.GetSegmentation().AddEmptySegment("tumour", "tumour")
    def call():
        return ctx.logic.segment(**ctx.volumes, model=str(ctx.models["model"]), outputSegmentation=node,
                                 device="cpu", wait=True)

    return BadCall(call, "'my corrected tumour'", "Create new", kept=(node, ["tumour"]))


# ------------------------------------------------------------------------------- library-level, in Slicer

def huge_network_checkpoint(ctx: Context) -> BadCall:
    """A small checkpoint whose stored config describes a network of terabytes: refused before it is built in
    Slicer's own process (which would freeze or die)."""
    import torch

    payload = torch.load(ctx.models["model"], weights_only=True)
    payload["config"]["model"]["filters"] = [2 ** 20 * (level + 1)
                                             for level in range(len(payload["config"]["model"]["filters"]))]
    path = ctx.folder / "huge.pth"
    torch.save(payload, path)
    return BadCall(ctx.segment(model=path), str(path), "use a smaller network")


def model_file_is_a_fifo(ctx: Context) -> BadCall:
    """A named pipe would block Slicer as soon as it is opened: refused by its kind, never opened."""
    path = ctx.folder / "model.pth"
    os.mkfifo(path)
    return BadCall(ctx.segment(model=path), str(path), "not a regular file")


def config_file_is_a_fifo(ctx: Context) -> BadCall:
    path = ctx.folder / "config.json"
    os.mkfifo(path)
    return BadCall(ctx.segment(model=ctx.models["original"], config=path), str(path), "not a regular file")


def values_overflowing_in_normalisation(ctx: Context) -> BadCall:
    """Finite float32 voxels near 3e38: their mean and spread overflow to inf/NaN when normalised, which must
    not give an empty segmentation that looks like a result."""
    flair = ctx.array("flair")
    flair[flair > 0] = np.float32(3e38)
    flair[0, 0, 0] = np.float32(-3e38)
    node = ctx.volume(flair, "flair_huge_values")
    return BadCall(ctx.segment(flair=node), "the FLAIR input 'flair_huge_values'", "rescale the image")


# ---------------------------------------------------------------------------------------- wrong node kinds

def segmentation_as_input_volume(ctx: Context) -> BadCall:
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "tumour outline")
    return BadCall(ctx.segment(flair=node), "'tumour outline'", "choose a single 3-D MRI volume")


def label_map_as_input_volume(ctx: Context) -> BadCall:
    node = ctx.label()
    return BadCall(ctx.segment(t1=node), "'BraTS20_Training_007_seg'", "choose a single 3-D MRI volume")


def model_node_as_input_volume(ctx: Context) -> BadCall:
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLModelNode", "brain surface")
    return BadCall(ctx.segment(t2=node), "'brain surface'", "choose a single 3-D MRI volume")


def volume_as_output_segmentation(ctx: Context) -> BadCall:
    def call():
        return ctx.logic.segment(**ctx.volumes, model=str(ctx.models["model"]),
                                 outputSegmentation=ctx.volumes["t2"], device="cpu", wait=True)

    return BadCall(call, "'BraTS20_Training_007_t2'", "Create new Segmentation")


def segmentation_as_volumes_table(ctx: Context) -> BadCall:
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "not a table")

    def call():
        return ctx.logic.segment(**ctx.volumes, model=str(ctx.models["model"]), volumesTable=node, device="cpu",
                                 wait=True)

    return BadCall(call, "'not a table'", "Create new Table")


def volume_as_corrected_segmentation(ctx: Context) -> BadCall:
    call = lambda: ctx.logic.fineTuneOnCorrectedCase(ctx.volumes["flair"], str(ctx.folder / "run"))  # noqa: E731
    return BadCall(call, "'BraTS20_Training_007_flair'", "choose the BratsUNet result you corrected",
                   forbidden=[ctx.folder / "run"])


def output_is_a_corrected_training_case(ctx: Context) -> BadCall:
    """A result the user corrected and added as a training case is never refilled by a new run."""
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "corrected result")
    node.GetSegmentation().AddEmptySegment("NecroticTumorCore", "Necrotic tumor core")
    table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "corrected result volumes")
    node.SetNodeReferenceID("BratsUNetVolumes", table.GetID())
    node.SetAttribute("BratsUNet.TrainingLabel", "true")

    def call():
        return ctx.logic.segment(**ctx.volumes, model=str(ctx.models["model"]), outputSegmentation=node,
                                 device="cpu", wait=True)

    return BadCall(call, "'corrected result'", "Create new Segmentation", kept=(node, ["Necrotic tumor core"]))


# ------------------------------------------------------------------------------------------------ session

def busy_logic(ctx: Context) -> BadCall:
    """A second job while one runs (a stand-in worker holds the first until it is cancelled)."""
    import sys

    from BratsUNetSlicer.worker import WorkerClient

    held = WorkerClient([sys.executable, str(Path(__file__).parents[1] / "slicer" / "fake_worker.py")])
    job = held.submit(["hang"])
    while not job.events:  # the held worker's first message: it is running now
        assert not job.poll(timeout=None), job.error
    ctx.monkeypatch.setattr(ctx.logic, "worker", held)
    return BadCall(ctx.segment(), "already running a job", "cancel it", cleanup=held.close)


def failed_dependency_install(ctx: Context) -> BadCall:
    """pip fails (no network, no wheel): one line, not pip's pages, and not a RuntimeError."""
    from BratsUNetSlicer import dependencies

    def failing_pip(requirements):
        raise RuntimeError("Command '['pip', 'install', 'monai>=1.4,<2']' returned non-zero exit status 1.\n"
                           "ERROR: No matching distribution found for monai")

    ctx.monkeypatch.setattr(dependencies, "missing_packages", lambda: ["monai"])
    ctx.monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda text: True, raising=False)
    ctx.monkeypatch.setattr(slicer.util, "pip_install", failing_pip, raising=False)
    return BadCall(ctx.segment(), "monai", "try again")


@dataclass(frozen=True)
class Row:
    kind: str
    build: Callable[[Context], BadCall]

    @property
    def id(self) -> str:
        return self.build.__name__


ROWS = [
    Row("image", missing_image),
    Row("image", not_an_image),
    Row("image", truncated_image),
    Row("image", four_d_image),
    Row("image", nan_voxels),
    Row("image", infinite_voxels),
    Row("image", all_zero_channel),
    Row("geometry", fields_of_view_apart),
    Row("geometry", sheared_image),
    Row("model", model_with_other_channel_count),
    Row("model", model_needing_another_image),
    Row("label", label_outside_configured_labels),
    Row("config", config_unknown_block),
    Row("config", config_unknown_key),
    Row("config", config_unknown_name),
    Row("config", config_wrong_type),
    Row("checkpoint", truncated_checkpoint),
    Row("checkpoint", checkpoint_of_another_format),
    Row("checkpoint", checkpoint_that_would_run_code),
    Row("output", training_folder_is_a_file),
    Row("output", training_folder_not_writable),
    Row("output", full_disk_while_exporting),
    Row("output", existing_user_segmentation),
    Row("checkpoint", huge_network_checkpoint),
    Row("checkpoint", model_file_is_a_fifo),
    Row("config", config_file_is_a_fifo),
    Row("image", values_overflowing_in_normalisation),
    Row("node", segmentation_as_input_volume),
    Row("node", label_map_as_input_volume),
    Row("node", model_node_as_input_volume),
    Row("node", volume_as_output_segmentation),
    Row("node", segmentation_as_volumes_table),
    Row("node", volume_as_corrected_segmentation),
    Row("output", output_is_a_corrected_training_case),
    Row("session", busy_logic),
    Row("session", failed_dependency_install),
]
# Kinds only the Slicer module has: a selector holding the wrong kind of node, and the session's state.
SLICER_KINDS = {"node", "session"}


def _node_ids(scene) -> list[str]:
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


def _hashes(paths) -> dict[str, str]:
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def test_every_kind_has_rows():
    assert {row.kind for row in ROWS} == set(BAD_INPUT_KINDS) | SLICER_KINDS


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_bad_input_is_one_exception_and_the_scene_is_unchanged(row, scene, logic, case_files, models, tmp_path,
                                                               monkeypatch, restore_permissions):
    from BratsUNetSlicer.transaction import scene_state

    ctx = Context(tmp_path, case_files, models, logic, monkeypatch)
    inputs_before = _hashes([*case_files.values(), *models.values()])
    bad = row.build(ctx)
    nodes_before, state_before, files_before = _node_ids(scene), scene_state(scene), snapshot(tmp_path)
    try:
        with pytest.raises(BratsUNetError) as raised:
            bad.call()
    finally:
        if bad.cleanup is not None:
            bad.cleanup()
    message = str(raised.value)
    assert "\n" not in message and "Traceback" not in message, message
    assert bad.names in message, f"the message does not name {bad.names!r}: {message}"
    assert bad.fix in message, f"the message does not suggest {bad.fix!r}: {message}"
    assert _node_ids(scene) == nodes_before, "the scene changed"
    assert scene_state(scene) == state_before, "a node's name or content changed"
    assert snapshot(tmp_path) == files_before, "files were written"
    assert _hashes([*case_files.values(), *models.values()]) == inputs_before, "an input file changed"
    assert leftovers(tmp_path) == []
    for path in bad.forbidden:
        assert not path.exists(), f"{path} was created"
    if bad.kept is not None:
        node, names = bad.kept
        content = node.GetSegmentation()
        assert [content.GetNthSegment(i).GetName() for i in range(content.GetNumberOfSegments())] == names


def test_inputs_on_other_grids_are_resampled_onto_the_reference(scene, logic, case_files, models, tmp_path):
    """The successful row of the matrix: a T1ce on a coarser grid and a T2 rotated by 10 degrees."""
    from scipy import ndimage

    ctx = Context(tmp_path, case_files, models, logic, monkeypatch=None)
    t1ce, affine = load(case_files["t1ce"])
    coarse = save_nifti(tmp_path / "t1ce_2mm.nii.gz", t1ce[::2, ::2, ::2], affine @ np.diag([2.0, 2, 2, 1]))
    t2, affine = load(case_files["t2"])
    angle = np.deg2rad(10)
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    rotated_affine = affine @ rotation
    to_source = np.linalg.inv(affine) @ rotated_affine
    rotated = save_nifti(tmp_path / "t2_rotated.nii.gz",
                         ndimage.affine_transform(t2, to_source[:3, :3], to_source[:3, 3], order=1), rotated_affine)
    volumes = dict(ctx.volumes, t1ce=ctx.scene_io.load_volume(coarse, "BraTS20_Training_007_t1ce_2mm"),
                   t2=ctx.scene_io.load_volume(rotated, "BraTS20_Training_007_t2_rotated"))
    assert volumes["t1ce"].GetImageData().GetDimensions() == (16, 16, 16)

    node = logic.segment(**volumes, model=str(models["model"]), device="cpu", wait=True)

    assert node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole()) is volumes["flair"]
    assert node.GetSegmentation().GetNumberOfSegments() == 3
