"""``bratsunet refine``: the same label map as the library's ``refine`` on the same files, written whole, and the
safety rules of the other commands (no input written over, nothing replaced without --overwrite, one-line errors
before any work)."""

from __future__ import annotations

import copy
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from library_support import TINY_CONFIG

from BratsUNetLib.cli.main import main
from BratsUNetLib.config.loading import load_config
from BratsUNetLib.data.images import read_case
from BratsUNetLib.guidance import Click
from BratsUNetLib.inference.loaded_model import load_models
from BratsUNetLib.inference.refinement import refine
from BratsUNetLib.models.checkpoint import save_checkpoint
from BratsUNetLib.models.networks import build_network
from BratsUNetLib.phantoms.generate import generate_case, write_case

CHANNELS = ["flair", "t1", "t1ce", "t2"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A guided tiny DynUNet (13 inputs, random seeded weights) and an unguided one."""
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for kind in ("guided", "automatic"):
        config = copy.deepcopy(TINY_CONFIG)
        if kind == "guided":
            config["model"]["in_channels"] = 13
            config["guidance"] = {"sigma": 2, "margin": 6, "max_edge": 24}
        config = load_config(config)
        torch.manual_seed(0)
        paths[kind] = save_checkpoint(folder / f"{kind}.pth", build_network(config["model"]), config=config,
                                      channels=CHANNELS)
    return paths


@pytest.fixture
def case(tmp_path) -> dict[str, Path]:
    phantom = generate_case((32, 36, 28), seed=5)
    paths = write_case(phantom, tmp_path, "case")
    return {**{m: paths[m] for m in CHANNELS}, "seg": paths["seg"], "affine": phantom.affine}


def _argv(models, case, output, *extra, model="guided"):
    argv = ["refine", "--model", str(models[model]), "--segmentation", str(case["seg"]), "--output", str(output),
            "--device", "cpu", "--progress", "none"]
    for modality in CHANNELS:
        argv += [f"--{modality}", str(case[modality])]
    return [*argv, *extra]


def _point(affine, index):
    return ",".join(f"{v:g}" for v in (affine @ np.array([*index, 1.0]))[:3])


def test_the_command_line_writes_what_the_library_refines(models, case, tmp_path):
    output = tmp_path / "refined.nii.gz"
    add, remove = _point(case["affine"], (16, 18, 14)), _point(case["affine"], (4, 4, 4))
    assert main(_argv(models, case, output, "--add", f"{add}:TC", "--remove", remove)) == 0

    written = nib.load(str(output))
    image, affine = read_case([case[m] for m in CHANNELS])
    labels = np.asarray(nib.load(str(case["seg"])).dataobj).astype(np.uint8)
    [model] = load_models([models["guided"]], device="cpu")
    clicks = [Click(tuple(float(v) for v in add.split(",")), "TC", True),
              Click(tuple(float(v) for v in remove.split(",")), "WT", False)]
    expected = refine(model, image, affine, labels, clicks).labels
    np.testing.assert_array_equal(np.asarray(written.dataobj), expected)
    np.testing.assert_allclose(written.affine, affine, atol=1e-5)
    assert written.get_data_dtype() == np.uint8


def test_refine_refuses_before_any_work(models, case, tmp_path, capsys):
    output = tmp_path / "refined.nii.gz"
    point = _point(case["affine"], (16, 18, 14))
    seg_bytes = Path(case["seg"]).read_bytes()
    rows = [
        (_argv(models, case, case["seg"], "--add", point, "--overwrite"), "an input is never written over"),
        (_argv(models, case, output), "No click given"),
        (_argv(models, case, output, "--add", "1,2"), "is not a point"),
        (_argv(models, case, output, "--add", "999,999,999"), "lies outside the image"),
        (_argv(models, case, output, "--add", point, model="automatic"), "takes no clicks"),
    ]
    for argv, message in rows:
        assert main(argv) == 2, message
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and message in error[0] and "Traceback" not in error[0], error
    assert Path(case["seg"]).read_bytes() == seg_bytes and not output.exists()

    output.write_bytes(b"mine")
    assert main(_argv(models, case, output, "--add", point)) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and output.read_bytes() == b"mine"


def test_a_segmentation_of_another_grid_is_refused(models, case, tmp_path, capsys):
    moved = tmp_path / "moved_seg.nii.gz"
    image = nib.load(str(case["seg"]))
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), image.affine @ np.diag([2.0, 2, 2, 1])), str(moved))
    argv = _argv(models, case, tmp_path / "out.nii.gz", "--add", _point(case["affine"], (16, 18, 14)))
    argv[argv.index("--segmentation") + 1] = str(moved)
    assert main(argv) == 2
    assert "is not on the grid of --flair" in capsys.readouterr().err


def test_a_long_lived_process_reads_and_prepares_a_case_once_for_its_clicks(models, case, tmp_path, monkeypatch):
    """The Slicer worker runs one refine per click on the same files: the second click reads nothing again, and
    a changed file is read again."""
    import BratsUNetLib.cli.refine as command

    reads = []
    real = command.read_case
    monkeypatch.setattr(command, "read_case", lambda paths: reads.append(paths) or real(paths))
    command._last_case.clear()
    point = _point(case["affine"], (16, 18, 14))
    first, second = tmp_path / "first.nii.gz", tmp_path / "second.nii.gz"
    assert main(_argv(models, case, first, "--add", point)) == 0
    assert main(_argv(models, case, second, "--add", point)) == 0
    assert len(reads) == 1
    np.testing.assert_array_equal(np.asarray(nib.load(str(first)).dataobj), np.asarray(nib.load(str(second)).dataobj))
    image = nib.load(str(case["t2"]))
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj) + 1, image.affine), str(case["t2"]))  # the T2 changed
    assert main(_argv(models, case, tmp_path / "third.nii.gz", "--add", point)) == 0
    assert len(reads) == 2
