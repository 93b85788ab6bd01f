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
    CASE_SHAPE,
    COMMAND_LINE_KINDS,
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


# ------------------------------------------------ hostile images and checkpoints: sizes, kinds of file, values

def _header_only_nifti(path: Path, shape: tuple[int, ...]) -> Path:
    """An uncompressed NIfTI file whose header claims ``shape`` (float32) but that holds 1 KB of voxels."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header.set_sform(np.diag([-1.0, -1.0, 1.0, 1.0]), code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * 1024)
    return path


def terabyte_header(ctx: Context) -> Bad:
    path = _header_only_nifti(ctx.folder / "inputs" / "t2_huge.nii", (30000, 30000, 30000))
    return Bad(ctx.segment(t2=path), str(path), "its header may be damaged")


def rgb_image(ctx: Context) -> Bad:
    import nibabel as nib

    rgb = np.zeros(CASE_SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    path = ctx.folder / "inputs" / "flair_rgb.nii.gz"
    path.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(rgb, load(ctx.case["flair"])[1]), str(path))
    return Bad(ctx.segment(flair=path), str(path), "is an RGB colour image")


def complex_image(ctx: Context) -> Bad:
    path = save_nifti(ctx.folder / "inputs" / "t1_complex.nii.gz", _case_array(ctx, "t1").astype(np.complex64),
                      load(ctx.case["t1"])[1], np.complex64)
    return Bad(ctx.segment(t1=path), str(path), "give the magnitude image")


def complex_label_evaluate(ctx: Context) -> Bad:
    path = save_nifti(ctx.folder / "inputs" / "seg_complex.nii.gz", _case_array(ctx, "seg"),
                      load(ctx.case["seg"])[1], np.complex64)
    return Bad(ctx.evaluate(path, ctx.case["seg"]), str(path), "not a scalar image")


def fifo_as_image(ctx: Context) -> Bad:
    """A named pipe with no writer: opening it would block for ever."""
    path = ctx.folder / "inputs" / "flair.nii.gz"
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    return Bad(ctx.segment(flair=path), str(path), "is a named pipe (FIFO), not a regular file")


def directory_as_image(ctx: Context) -> Bad:
    path = ctx.folder / "inputs" / "t1ce.nii.gz"
    path.mkdir(parents=True)
    return Bad(ctx.segment(t1ce=path), str(path), "is a folder, not a regular file; give a NIfTI file")


def device_as_image(ctx: Context) -> Bad:
    """/dev/zero never ends: read, it would fill the memory."""
    return Bad(ctx.segment(t2=Path("/dev/zero")), "/dev/zero", "is a character device, not a regular file")


def overflowing_values(ctx: Context) -> Bad:
    """Finite float32 voxels near 3e38: the z-score's sums overflow (once an empty segmentation and exit 0)."""
    t1 = _case_array(ctx, "t1")
    path = ctx.image("t1_overflowing", t1 / t1.max() * 3e38)
    return Bad(ctx.segment(t1=path), str(path), "rescale the image to a usual intensity range")


def _huge_network_checkpoint(ctx: Context) -> Path:
    """A small, otherwise valid BratsUNet checkpoint whose stored config describes a network of ~10^13 weights."""
    import torch

    from BratsUNetLib.models.checkpoint import load_checkpoint

    content = load_checkpoint(ctx.models["model"])
    content["config"]["model"]["filters"] = [100_000, 200_000, 400_000]
    path = ctx.folder / "huge_network.pth"
    torch.save(content, path)
    return path


def huge_network_checkpoint(ctx: Context) -> Bad:
    path = _huge_network_checkpoint(ctx)
    return Bad(ctx.segment(model=path), str(path), "use a smaller network (fewer filters/channels)")


def huge_network_config(ctx: Context) -> Bad:
    model = {**TINY_CONFIG["model"], "filters": [100_000, 200_000, 400_000]}
    return Bad(ctx.train(ctx.config(model=model)), "filters [100000, 200000, 400000]", "use a smaller network")


def device_as_checkpoint(ctx: Context) -> Bad:
    return Bad(ctx.segment(model=Path("/dev/zero")), "/dev/zero", "is a character device, not a regular file")


def fifo_as_checkpoint(ctx: Context) -> Bad:
    path = ctx.folder / "model.pth"
    os.mkfifo(path)
    return Bad(ctx.segment(model=path), str(path), "is a named pipe (FIFO)")


def directory_as_checkpoint(ctx: Context) -> Bad:
    path = ctx.folder / "model.pth"
    path.mkdir()
    return Bad(ctx.segment(model=path), str(path), "give the model file (.pth)")


HOSTILE_FILE_ROWS = [
    Row("image", terabyte_header),
    Row("image", rgb_image),
    Row("image", complex_image),
    Row("label", complex_label_evaluate),
    Row("image", fifo_as_image, subprocess=True),
    Row("image", directory_as_image),
    Row("image", device_as_image),
    Row("image", overflowing_values),
    Row("checkpoint", huge_network_checkpoint, subprocess=True),
    Row("config", huge_network_config),
    Row("checkpoint", device_as_checkpoint),
    Row("checkpoint", fifo_as_checkpoint),
    Row("checkpoint", directory_as_checkpoint),
]


# ----------------------------------------------- configs, training logs, arguments and where outputs go

def _spoiled_config(ctx: Context, **changes) -> Path:
    """The tiny training config with blocks of it changed (Python's JSON writer writes NaN and Infinity)."""
    config = {**TINY_CONFIG, **changes}
    return ctx.config(**{key: config[key] for key in changes})


def _with_lr(lr: float) -> dict:
    return {**TINY_CONFIG["optimizer"], "lr": lr}


def _with_shape(shape: list[int]) -> dict:
    return {**TINY_CONFIG["dataset"], "desired_shape": shape}


def _validate(config: Path) -> list[str]:
    return ["validate-config", str(config)]


def nan_lr_validate_config(ctx: Context) -> Bad:
    return Bad(_validate(_spoiled_config(ctx, optimizer=_with_lr(float("nan")))), "optimizer.lr",
               "nan is not a finite number; give an ordinary number")


def nan_lr_train(ctx: Context) -> Bad:
    return Bad(ctx.train(_spoiled_config(ctx, optimizer=_with_lr(float("nan")))), "optimizer.lr",
               "nan is not a finite number; give an ordinary number")


def infinite_lr_validate_config(ctx: Context) -> Bad:
    return Bad(_validate(_spoiled_config(ctx, optimizer=_with_lr(float("inf")))), "optimizer.lr",
               "inf is not a finite number")


def negative_lr_train(ctx: Context) -> Bad:
    return Bad(ctx.train(_spoiled_config(ctx, optimizer=_with_lr(-0.001))), "optimizer.lr",
               "expected a number of 0 or more, e.g. 0.001")


_UNDIVIDABLE = ("model.strides downsample the axes by [4, 4, 4], so each edge must be a multiple of its factor; "
                "the nearest valid shape is [32, 32, 28]")


def undividable_shape_validate_config(ctx: Context) -> Bad:
    return Bad(_validate(_spoiled_config(ctx, dataset=_with_shape([30, 31, 29]))), "dataset.desired_shape",
               _UNDIVIDABLE)


def undividable_shape_train(ctx: Context) -> Bad:
    return Bad(ctx.train(_spoiled_config(ctx, dataset=_with_shape([30, 31, 29]))), "dataset.desired_shape",
               _UNDIVIDABLE)


def labels_against_out_channels_validate_config(ctx: Context) -> Bad:
    """Accepted by validate-config before it ran train's checks; train refused it."""
    config = _spoiled_config(ctx, model={**TINY_CONFIG["model"], "out_channels": 2})
    return Bad(_validate(config), "model.out_channels", "make them agree")


def deeply_nested_json_train(ctx: Context) -> Bad:
    path = ctx.folder / "config.json"
    path.write_text("[" * 100_000 + "]" * 100_000)  # json.loads: RecursionError
    return Bad(ctx.train(path), str(path), "nests its JSON too deeply to read")


def deeply_nested_json_validate_config(ctx: Context) -> Bad:
    nested = json.loads("[" * 300 + "]" * 300)  # readable, but deeper than Python can copy or print
    path = _spoiled_config(ctx, dataset={**TINY_CONFIG["dataset"], "normalization_kwargs": {"x": nested}})
    return Bad(_validate(path), "dataset: nested more than 32 levels deep", "check that this is the right file")


def huge_config(ctx: Context) -> Bad:
    path = ctx.folder / "config.json"
    with open(path, "wb") as stream:
        stream.write(b'{"model": ')
        stream.truncate(20 * 2 ** 20)  # 20 MB (sparse: no disk space)
    return Bad(ctx.train(path), str(path), "is 20 MB; a config is a few kB")


def fifo_as_config(ctx: Context) -> Bad:
    path = ctx.folder / "config.json"
    os.mkfifo(path)
    return Bad(ctx.train(path), str(path), "is a named pipe (FIFO), not a regular file; give the path of the .json")


def folder_as_config(ctx: Context) -> Bad:
    path = ctx.folder / "config.json"
    path.mkdir()
    return Bad(_validate(path), str(path), "is a folder, not a regular file; give the path of the .json")


def fifo_as_machine_config(ctx: Context) -> Bad:
    path = ctx.folder / "machine.json"
    os.mkfifo(path)
    return Bad(ctx.train(ctx.config()) + ["--machine_config_filename", str(path)], str(path),
               "is a named pipe (FIFO), not a regular file; give a JSON file such as")


def _training_log(ctx: Context, content: bytes) -> tuple[Path, Path]:
    """A valid config and, in its work folder, a training_log.csv with ``content`` (what a resumed run reads)."""
    config = ctx.config()
    log = ctx.folder / "out" / "config" / "training_log.csv"
    log.parent.mkdir(parents=True)
    log.write_bytes(content)
    return config, log


_MOVE_AWAY = "move it away (or delete it) to start the training over, or train into a new --output_dir"


def binary_training_log(ctx: Context) -> Bad:
    config, log = _training_log(ctx, bytes(range(256)) * 64)
    return Bad(ctx.train(config), str(log), _MOVE_AWAY)


def training_log_with_nul_bytes(ctx: Context) -> Bad:
    config, log = _training_log(ctx, b"epoch,loss,lr,val_loss\n1,0.5,0.001,\n\0\0\0\0\n")
    return Bad(ctx.train(config), str(log), _MOVE_AWAY)


def garbled_training_log(ctx: Context) -> Bad:
    """An unclosed quote swallows the rest of the file into one field larger than the csv module allows."""
    config, log = _training_log(ctx, b'epoch,loss,lr,val_loss\n1,"' + b"0.5,0.001,\n" * 20_000)
    return Bad(ctx.train(config), str(log), _MOVE_AWAY)


def training_log_with_nan_epoch(ctx: Context) -> Bad:
    config, log = _training_log(ctx, b"epoch,loss,lr,val_loss\nnan,0.5,0.001,\n")
    return Bad(ctx.train(config), str(log), "the epoch nan is not a whole number")


def fifo_as_training_log(ctx: Context) -> Bad:
    config = ctx.config()
    log = ctx.folder / "log.csv"
    os.mkfifo(log)
    return Bad(ctx.train(config) + ["--training_log_filename", str(log)], str(log), "is a named pipe (FIFO)")


def _demo(ctx: Context, *arguments: str) -> list[str]:
    return ["demo", "--output", str(ctx.folder / "demo"), "--device", "cpu", *arguments]


def phantom_larger_than_memory(ctx: Context) -> Bad:
    return Bad(["phantom", "--output", str(ctx.folder / "phantoms"), "--n-cases", "1", "--shape", "100000",
                "100000", "100000"], "A phantom of 100000×100000×100000 voxels", "give a smaller --shape")


def demo_network_shape_7(ctx: Context) -> Bad:
    return Bad(_demo(ctx, "--network-shape", "7"), "--network-shape 7 7 7", "give one or three multiples of 16")


def demo_network_shape_16(ctx: Context) -> Bad:
    """Divisible, but 1x1x1 at the deepest level: training once died there with a torch traceback."""
    return Bad(_demo(ctx, "--network-shape", "16"), "--network-shape 16 16 16", "give at least 32")


def demo_minutes_nan(ctx: Context) -> Bad:
    return Bad(_demo(ctx, "--minutes", "nan"), "--minutes", "give the training budget in minutes")


def demo_minutes_negative(ctx: Context) -> Bad:
    return Bad(_demo(ctx, "--minutes", "-1"), "--minutes", "give the training budget in minutes")


def demo_minutes_infinite(ctx: Context) -> Bad:
    return Bad(_demo(ctx, "--minutes", "inf"), "--minutes", "give the training budget in minutes")


def demo_phantom_larger_than_memory(ctx: Context) -> Bad:
    return Bad(_demo(ctx, "--shape", "100000"), "A phantom of 100000×100000×100000 voxels", "give a smaller --shape")


def demo_network_larger_than_memory(ctx: Context) -> Bad:
    return Bad(_demo(ctx, "--network-shape", "4096"), "--network-shape 4096 4096 4096", "would need about")


def existing_phantom_case(ctx: Context) -> Bad:
    seg = ctx.folder / "phantoms" / "BraTS20_Phantom_001" / "BraTS20_Phantom_001_seg.nii.gz"
    seg.parent.mkdir(parents=True)
    seg.write_bytes(b"the user's own label map")
    return Bad(["phantom", "--output", str(ctx.folder / "phantoms"), "--n-cases", "2", "--shape", "32", "32", "32"],
               str(seg), "pass --overwrite to replace them")


def existing_demo_results(ctx: Context) -> Bad:
    report = ctx.folder / "demo" / "report" / "index.html"
    report.parent.mkdir(parents=True)
    report.write_text("the earlier demo's report")
    return Bad(_demo(ctx, "--minutes", "0.01"), str(ctx.folder / "demo"), "pass --overwrite to replace them")


def output_name_too_long(ctx: Context) -> Bad:
    output = ctx.folder / "out" / ("a" * 300 + ".nii.gz")  # file systems allow 255 bytes per name
    return Bad(ctx.segment(output=output), "a" * 40, "choose a name of at most")


def output_directory_is_a_file(ctx: Context) -> Bad:
    taken = ctx.folder / "predictions"
    taken.write_text("the user's notes")
    config = ctx.config(test_filenames=[{"image": [str(ctx.case[m]) for m in MODALITIES]}])
    argv = ["predict", "--config_filename", str(config), "--model_filename", str(ctx.models["model"]),
            "--output_directory", str(taken), "--device", "cpu"]
    return Bad(argv, str(taken), "is a file")


CONFIG_LOG_ARGUMENT_ROWS = [
    Row("config", nan_lr_validate_config, subprocess=True),
    Row("config", nan_lr_train),
    Row("config", infinite_lr_validate_config),
    Row("config", negative_lr_train),
    Row("config", undividable_shape_validate_config),
    Row("config", undividable_shape_train),
    Row("config", labels_against_out_channels_validate_config),
    Row("config", deeply_nested_json_train, subprocess=True),
    Row("config", deeply_nested_json_validate_config),
    Row("config", huge_config),
    Row("config", fifo_as_config),
    Row("config", folder_as_config),
    Row("config", fifo_as_machine_config),
    Row("log", binary_training_log, subprocess=True),
    Row("log", training_log_with_nul_bytes),
    Row("log", garbled_training_log),
    Row("log", training_log_with_nan_epoch),
    Row("log", fifo_as_training_log),
    Row("argument", phantom_larger_than_memory, subprocess=True),
    Row("argument", demo_network_shape_7, subprocess=True),
    Row("argument", demo_network_shape_16),
    Row("argument", demo_minutes_nan),
    Row("argument", demo_minutes_negative),
    Row("argument", demo_minutes_infinite),
    Row("argument", demo_phantom_larger_than_memory),
    Row("argument", demo_network_larger_than_memory),
    Row("output", existing_phantom_case),
    Row("output", existing_demo_results),
    Row("output", output_name_too_long),
    Row("output", output_directory_is_a_file),
]


ROWS += HOSTILE_FILE_ROWS + CONFIG_LOG_ARGUMENT_ROWS


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
    assert {row.kind for row in ROWS} == set(COMMAND_LINE_KINDS)
    assert {row.kind for row in ROWS if row.subprocess} == set(COMMAND_LINE_KINDS)
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


# Images without a trusted orientation: the one documented non-error of the hostile files
def test_images_without_orientation_segment_with_one_warning_line_each(tmp_path, case_files, models):
    """qform and sform codes 0: the rule of BratsUNetLib.data.images (nibabel's fallback affine, one warning line
    naming each such file), not a refusal. A real process: what its stderr shows."""
    import nibabel as nib

    ctx = Context(tmp_path, case_files, models)
    images = {}
    for name in MODALITIES:
        image = nib.Nifti1Image(_case_array(ctx, name), None)  # no affine: both codes stay 0
        images[name] = tmp_path / "inputs" / f"{name}_no_orientation.nii.gz"
        images[name].parent.mkdir(exist_ok=True)
        nib.save(image, str(images[name]))
    result = run_bratsunet([*ctx.segment(**images), "--progress", "none"])
    errors = visible_lines(result.stderr)
    assert result.returncode == 0, result.stderr
    assert len(errors) == len(MODALITIES), errors
    for name in MODALITIES:
        assert sum(str(images[name]) in line and "qform and sform codes are 0" in line for line in errors) == 1
    assert load(ctx.output)[0].shape == CASE_SHAPE
