"""The bad-input matrix on the command line: every broken input is one clear line, a non-zero exit, no output.

Each row of :data:`ROWS` says how to break one input and what the one-line message must name (the file or the
config key) and suggest (the fix). Every row runs through ``BratsUNetLib.cli.main`` in this process; one row of
each kind (marked ``subprocess``) also runs as a real ``python -m BratsUNetLib`` process, which must exit
non-zero with exactly one line on stderr and no traceback. In both cases the test's folder must be unchanged
afterwards apart from the bad input itself: no output file, no temporary file, an existing output untouched,
and no file created by a checkpoint that would run code.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from reliability_support import (
    BAD_INPUT_KINDS,
    MODALITIES,
    TINY_CONFIG,
    leftovers,
    load,
    malicious_checkpoint,
    run_bratsunet,
    save_nifti,
    snapshot,
    truncated_copy,
    visible_lines,
)


@dataclass
class Bad:
    """A command line with one broken input, and what its error message must contain."""

    argv: list[str]
    names: str  # the file or config key the message must name
    fix: str  # a fragment of the suggested fix
    forbidden: list[Path] = field(default_factory=list)  # files that must not exist afterwards


class Context:
    """What a row builds its bad input from: a folder of its own, the generated case and the tiny models."""

    def __init__(self, folder: Path, case: dict[str, Path], models: dict[str, Path]):
        self.folder = folder
        self.case = case
        self.models = models
        self.output = folder / "out" / "labels.nii.gz"

    def segment(self, model: Path | None = None, output: Path | None = None, **images: Path) -> list[str]:
        """``segment`` of the case with some images replaced, the tiny model and ``self.output``."""
        argv = ["segment", "--model", str(model or self.models["model"]), "--output", str(output or self.output),
                "--device", "cpu"]
        for name in MODALITIES:
            argv += [f"--{name}", str(images.get(name) or self.case[name])]
        return argv

    def image(self, name: str, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
        """A NIfTI file ``<name>.nii.gz`` in the row's folder (the case's affine unless given)."""
        affine = load(self.case["flair"])[1] if affine is None else affine
        return save_nifti(self.folder / "inputs" / f"{name}.nii.gz", array, affine)

    def config(self, **changes) -> Path:
        """A training config (the tiny one, training on the case) with top-level blocks set by ``changes``."""
        cases = [{"image": [str(self.case[m]) for m in MODALITIES], "label": str(self.case["seg"])}]
        path = self.folder / "config.json"
        path.write_text(json.dumps({**TINY_CONFIG, "training_filenames": cases, **changes}))
        return path

    def train(self, config: Path) -> list[str]:
        return ["train", "--config_filename", str(config), "--output_dir", str(self.folder / "out"),
                "--nthreads", "0", "--ngpus", "0", "--seed", "0"]

    def evaluate(self, prediction: Path, reference: Path, output: Path | None = None) -> list[str]:
        argv = ["evaluate", "--prediction", str(prediction), "--reference", str(reference)]
        return argv + (["--output", str(output)] if output else [])


def _case_array(ctx: Context, name: str) -> np.ndarray:
    return load(ctx.case[name])[0]


# ------------------------------------------------------------------------------------------------- images

def missing_image(ctx: Context) -> Bad:
    path = ctx.folder / "inputs" / "missing_flair.nii.gz"
    return Bad(ctx.segment(flair=path), str(path), "check the path")


def not_an_image(ctx: Context) -> Bad:
    path = ctx.folder / "inputs" / "t1.nii.gz"
    path.parent.mkdir(parents=True)
    path.write_text("Patient: anonymous\nThis is a report, not an image.\n")
    return Bad(ctx.segment(t1=path), str(path), "give a NIfTI file")


def not_an_image_evaluate(ctx: Context) -> Bad:
    path = ctx.folder / "inputs" / "reference_seg.nii.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(bytes(range(256)) * 40)
    return Bad(ctx.evaluate(ctx.case["seg"], path), str(path), "give a NIfTI file")


def truncated_image(ctx: Context) -> Bad:
    path = truncated_copy(ctx.case["t1ce"], ctx.folder / "t1ce_truncated.nii.gz")
    return Bad(ctx.segment(t1ce=path), str(path), "copy or export it again")


def truncated_image_evaluate(ctx: Context) -> Bad:
    path = truncated_copy(ctx.case["seg"], ctx.folder / "seg_truncated.nii.gz")
    return Bad(ctx.evaluate(path, ctx.case["seg"]), str(path), "copy or export it again")


def four_d_image(ctx: Context) -> Bad:
    t2 = _case_array(ctx, "t2")
    path = ctx.image("t2_4d", np.stack([t2, t2], axis=-1))
    return Bad(ctx.segment(t2=path), str(path), "give one 3-D volume per file")


def nan_voxels(ctx: Context) -> Bad:
    flair = _case_array(ctx, "flair")
    flair[10:12, 10:12, 10:12] = np.nan
    path = ctx.image("flair_nan", flair)
    return Bad(ctx.segment(flair=path), str(path), "replace them")


def infinite_voxels(ctx: Context) -> Bad:
    t1 = _case_array(ctx, "t1")
    t1[5, 5, 5] = np.inf
    path = ctx.image("t1_inf", t1)
    return Bad(ctx.segment(t1=path), str(path), "replace them")


def all_zero_channel(ctx: Context) -> Bad:
    path = ctx.image("t1ce_zero", np.zeros_like(_case_array(ctx, "t1ce")))
    return Bad(ctx.segment(t1ce=path), str(path), "give the image that holds the scan")


# ----------------------------------------------------------------------------------------------- geometry

def fields_of_view_apart(ctx: Context) -> Bad:
    array, affine = load(ctx.case["t2"])
    moved = affine.copy()
    moved[:3, 3] += 1000.0  # one metre away: the same case cannot be there
    path = ctx.image("t2_elsewhere", array, moved)
    return Bad(ctx.segment(t2=path), str(path), "check that the files belong to the same case")


def fields_of_view_apart_evaluate(ctx: Context) -> Bad:
    array, affine = load(ctx.case["seg"])
    moved = affine.copy()
    moved[:3, 3] += 1000.0
    path = save_nifti(ctx.folder / "prediction_elsewhere.nii.gz", array, moved, np.uint8)
    return Bad(ctx.evaluate(path, ctx.case["seg"]), str(path), "check that the files belong to the same case")


def sheared_reference(ctx: Context) -> Bad:
    array, affine = load(ctx.case["flair"])
    sheared = affine.copy()
    sheared[0, 1] += 0.3  # the second voxel axis leans into the first: the axes are no longer perpendicular
    path = ctx.image("flair_sheared", array, sheared)
    return Bad(ctx.segment(flair=path), str(path), "resample it onto a regular grid")


# ------------------------------------------------------------------------------------------------- models

def model_with_other_channel_count(ctx: Context) -> Bad:
    """Original weights for 4 inputs with a config that says the network takes 2."""
    config = json.loads(ctx.models["config"].read_text())
    config["model"]["in_channels"] = 2
    path = ctx.folder / "config_two_channels.json"
    path.write_text(json.dumps(config))
    argv = ctx.segment(model=ctx.models["original"]) + ["--config", str(path)]
    return Bad(argv, str(ctx.models["original"]), "use the config the checkpoint was trained with")


def model_needing_another_image(ctx: Context) -> Bad:
    """A network with a fifth input (ADC) that the four BraTS images cannot feed."""
    return Bad(ctx.segment(model=ctx.models["five_channels"]), str(ctx.models["five_channels"]),
               "needs the adc image(s) (flair, t1, t1ce, t2, adc); only flair, t1, t1ce, t2 were given: give them, or "
               "choose a model trained on the images you have")


def training_cases_with_other_channel_count(ctx: Context) -> Bad:
    cases = [{"image": [str(ctx.case["flair"]), str(ctx.case["t1"])], "label": str(ctx.case["seg"])}]
    config = ctx.config(training_filenames=cases)
    return Bad(ctx.train(config), "training_filenames[0].image", "give one image per input channel")


# ------------------------------------------------------------------------------------------------- labels

def label_outside_configured_labels_evaluate(ctx: Context) -> Bad:
    labels = _case_array(ctx, "seg")
    labels[0:2, 0:2, 0:2] = 7
    path = save_nifti(ctx.folder / "reference" / "case_seg.nii.gz", labels, load(ctx.case["seg"])[1], np.uint8)
    return Bad(ctx.evaluate(ctx.case["seg"], path), str(path), "check the label convention")


def label_outside_configured_labels_train(ctx: Context) -> Bad:
    labels = _case_array(ctx, "seg")
    labels[labels == 4] = 3  # BraTS 2021's enhancing tumour, but the config trains on [2, 1, 4]
    path = save_nifti(ctx.folder / "inputs" / "seg_2021.nii.gz", labels, load(ctx.case["seg"])[1], np.uint8)
    cases = [{"image": [str(ctx.case[m]) for m in MODALITIES], "label": str(path)}]
    return Bad(ctx.train(ctx.config(training_filenames=cases)), str(path), "check the label convention")


# ------------------------------------------------------------------------------------------------ configs

def config_unknown_block(ctx: Context) -> Bad:
    return Bad(ctx.train(ctx.config(modle=TINY_CONFIG["model"])), "modle", "did you mean 'model'")


def config_unknown_key(ctx: Context) -> Bad:
    return Bad(ctx.train(ctx.config(training={"n_epoch": 3})), "training.n_epoch", "did you mean 'n_epochs'")


def config_unknown_name(ctx: Context) -> Bad:
    return Bad(ctx.train(ctx.config(optimizer={"name": "Adamm", "lr": 0.001})), "optimizer.name",
               "did you mean 'Adam'")


def config_wrong_type(ctx: Context) -> Bad:
    return Bad(ctx.train(ctx.config(training={"batch_size": "two"})), "training.batch_size",
               "expected a positive integer")


def config_not_json(ctx: Context) -> Bad:
    path = ctx.folder / "config.json"
    path.write_text('{"model": {"name": "DynUNet",}')
    return Bad(ctx.train(path), str(path), "is not valid JSON")


# ---------------------------------------------------------------------------------------------- checkpoints

def truncated_checkpoint(ctx: Context) -> Bad:
    path = truncated_copy(ctx.models["model"], ctx.folder / "model_truncated.pth", 0.5)
    return Bad(ctx.segment(model=path), str(path), "incomplete download")


def checkpoint_of_another_format(ctx: Context) -> Bad:
    path = ctx.folder / "model.pth"
    shutil.copyfile(ctx.case["flair"], path)  # an image saved under a model's name
    return Bad(ctx.segment(model=path), str(path), "not a valid checkpoint")


def checkpoint_that_would_run_code(ctx: Context) -> Bad:
    marker = ctx.folder / "created_by_the_checkpoint.txt"
    path = malicious_checkpoint(ctx.folder / "model.pth", marker)
    return Bad(ctx.segment(model=path), str(path), "only plain weights are ever loaded", forbidden=[marker])


# ------------------------------------------------------------------------------------------------ outputs

def output_is_a_directory(ctx: Context) -> Bad:
    folder = ctx.folder / "out" / "labels.nii.gz"
    folder.mkdir(parents=True)
    return Bad(ctx.segment(output=folder), str(folder), "give a file name")


def output_is_a_directory_evaluate(ctx: Context) -> Bad:
    folder = ctx.folder / "out" / "results.json"
    folder.mkdir(parents=True)
    return Bad(ctx.evaluate(ctx.case["seg"], ctx.case["seg"], folder), str(folder), "give a file name")


def output_folder_not_writable(ctx: Context) -> Bad:
    if os.geteuid() == 0:
        # Permissions do not stop root; /proc refuses new files to everyone.
        folder = Path("/proc")
    else:
        folder = ctx.folder / "out"
        folder.mkdir()
        folder.chmod(0o500)
    output = folder / "labels.nii.gz"
    return Bad(ctx.segment(output=output), str(folder), "choose another output location", forbidden=[output])


def existing_output(ctx: Context) -> Bad:
    ctx.output.parent.mkdir(parents=True)
    ctx.output.write_bytes(b"the user's own segmentation")
    return Bad(ctx.segment(), str(ctx.output), "pass --overwrite")


@dataclass(frozen=True)
class Row:
    kind: str
    build: Callable[[Context], Bad]
    subprocess: bool = False  # also run as a real process (one row of each kind at least)

    @property
    def id(self) -> str:
        return self.build.__name__


ROWS = [
    Row("image", missing_image),
    Row("image", not_an_image),
    Row("image", not_an_image_evaluate),
    Row("image", truncated_image),
    Row("image", truncated_image_evaluate, subprocess=True),
    Row("image", four_d_image),
    Row("image", nan_voxels),
    Row("image", infinite_voxels),
    Row("image", all_zero_channel),
    Row("geometry", fields_of_view_apart),
    Row("geometry", fields_of_view_apart_evaluate, subprocess=True),
    Row("geometry", sheared_reference),
    Row("model", model_with_other_channel_count, subprocess=True),
    Row("model", model_needing_another_image),
    Row("model", training_cases_with_other_channel_count),
    Row("label", label_outside_configured_labels_evaluate, subprocess=True),
    Row("label", label_outside_configured_labels_train),
    Row("config", config_unknown_block),
    Row("config", config_unknown_key),
    Row("config", config_unknown_name, subprocess=True),
    Row("config", config_wrong_type),
    Row("config", config_not_json),
    Row("checkpoint", truncated_checkpoint),
    Row("checkpoint", checkpoint_of_another_format),
    Row("checkpoint", checkpoint_that_would_run_code, subprocess=True),
    Row("output", output_is_a_directory),
    Row("output", output_is_a_directory_evaluate, subprocess=True),
    Row("output", output_folder_not_writable),
    Row("output", existing_output),
]


def _prepare(row: Row, tmp_path: Path, case_files, models) -> tuple[Bad, dict[str, bytes]]:
    ctx = Context(tmp_path, case_files, models)
    bad = row.build(ctx)
    return bad, snapshot(tmp_path)


def _check_no_output(bad: Bad, tmp_path: Path, before: dict[str, bytes]) -> None:
    assert snapshot(tmp_path) == before, "the failed command changed, added or left files"
    assert leftovers(tmp_path) == []
    for path in bad.forbidden:
        assert not path.exists(), f"{path} was created"


def _check_message(line: str, command: str, bad: Bad) -> None:
    assert line.startswith(f"bratsunet {command}: error: "), line
    assert bad.names in line, f"the message does not name {bad.names!r}: {line}"
    assert bad.fix in line, f"the message does not suggest {bad.fix!r}: {line}"
    assert "Traceback" not in line


def test_every_kind_has_rows_and_a_real_process_row():
    assert {row.kind for row in ROWS} == set(BAD_INPUT_KINDS)
    assert {row.kind for row in ROWS if row.subprocess} == set(BAD_INPUT_KINDS)
    assert len({row.id for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_bad_input_is_one_line_and_exit_2_with_no_output(row, tmp_path, case_files, models, cli,
                                                         restore_permissions):
    bad, before = _prepare(row, tmp_path, case_files, models)
    code, _stdout, errors = cli(bad.argv)
    assert code == 2
    assert len(errors) == 1, errors
    _check_message(errors[0], bad.argv[0], bad)
    _check_no_output(bad, tmp_path, before)


@pytest.mark.parametrize("row", [row for row in ROWS if row.subprocess], ids=lambda row: row.id)
def test_bad_input_in_a_real_process(row, tmp_path, case_files, models, restore_permissions):
    bad, before = _prepare(row, tmp_path, case_files, models)
    result = run_bratsunet(bad.argv)  # the default progress bars: what a user sees
    errors = visible_lines(result.stderr)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert len(errors) == 1, result.stderr
    _check_message(errors[0], bad.argv[0], bad)
    _check_no_output(bad, tmp_path, before)


def test_inputs_on_other_grids_are_resampled_onto_the_reference(tmp_path, case_files, models, cli):
    """The successful row of the matrix: a T1ce on a coarser grid and a T2 rotated by 10 degrees segment, and
    the label map lies on the FLAIR's grid."""
    from scipy import ndimage

    ctx = Context(tmp_path, case_files, models)
    t1ce, affine = load(case_files["t1ce"])
    coarse = ctx.image("t1ce_2mm", t1ce[::2, ::2, ::2], affine @ np.diag([2.0, 2.0, 2.0, 1.0]))
    t2, affine = load(case_files["t2"])
    angle = np.deg2rad(10)
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    to_source = rotation  # voxel of the rotated grid -> voxel of the original grid
    rotated = ctx.image("t2_rotated", ndimage.affine_transform(t2, to_source[:3, :3], to_source[:3, 3], order=1),
                        affine @ rotation)

    code, _stdout, errors = cli(ctx.segment(t1ce=coarse, t2=rotated))

    assert (code, errors) == (0, [])
    labels, labels_affine = load(ctx.output)
    flair, flair_affine = load(case_files["flair"])
    assert labels.shape == flair.shape
    np.testing.assert_allclose(labels_affine, flair_affine, atol=1e-5)
    assert set(np.unique(labels).tolist()) <= {0, 1, 2, 4}
