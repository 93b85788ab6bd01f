"""``bratsunet segment``: label maps on the reference input's grid, outputs, progress events and user errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from library_support import TINY_CONFIG

from BratsUNetLib.models.checkpoint import save_checkpoint
from BratsUNetLib.cli.main import main
from BratsUNetLib.config.loading import load_config
from BratsUNetLib.models.networks import build_network
from BratsUNetLib.phantoms.generate import PhantomCase, brats_affine, generate_case
from BratsUNetLib.phantoms.generate import write_case as write_phantom

REFERENCE_SHAPE = (40, 44, 36)
# The reference (FLAIR) is left-handed (BraTS's LPS grid with the Y axis reversed).
REFERENCE_AFFINE = brats_affine(REFERENCE_SHAPE, left_handed=True)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny DynUNet with random (seeded) weights and its bare state_dict, as the original saved it."""
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    config = load_config(TINY_CONFIG)
    network = build_network(config["model"])
    save_checkpoint(folder / "model.pth", network, config=config, channels=["flair", "t1", "t1ce", "t2"])
    torch.save(network.state_dict(), folder / "original.pth")
    (folder / "config.json").write_text(json.dumps(TINY_CONFIG))
    return folder / "model.pth"


@pytest.fixture(scope="module")
def phantom() -> PhantomCase:
    case = generate_case(REFERENCE_SHAPE, seed=11, left_handed=True)
    np.testing.assert_allclose(case.affine, REFERENCE_AFFINE)
    return case


def write_case(folder: Path, phantom: PhantomCase, other_grids: bool = True) -> dict[str, Path]:
    """The phantom in the BraTS layout; with ``other_grids`` T1, T1ce and T2 each on another grid than FLAIR:
    T1 the same grid stored in another voxel order (right-handed), T1ce coarser, T2 oblique."""
    paths = write_phantom(phantom, folder, "case")
    if other_grids:
        from scipy import ndimage

        # T1: axes 0 and 1 swapped and axis 0 flipped -> the same voxels, a right-handed affine.
        swap = np.array([[0, 1, 0, 0], [-1, 0, 0, REFERENCE_SHAPE[0] - 1], [0, 0, 1, 0], [0, 0, 0, 1.0]])
        t1 = np.ascontiguousarray(np.flip(phantom.images["t1"], 0).transpose(1, 0, 2))
        coarse = REFERENCE_AFFINE @ np.diag([2.0, 2.0, 2.0, 1.0])
        angle = 0.15
        oblique = REFERENCE_AFFINE.copy()
        oblique[:3, :3] = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                                    [0, 0, 1]]) @ REFERENCE_AFFINE[:3, :3]
        to_reference = np.linalg.inv(REFERENCE_AFFINE) @ oblique
        t2 = ndimage.affine_transform(phantom.images["t2"].astype(np.float32), to_reference[:3, :3],
                                      to_reference[:3, 3], order=1)
        for name, array, affine in (("t1", t1, REFERENCE_AFFINE @ swap),
                                    ("t1ce", phantom.images["t1ce"][::2, ::2, ::2], coarse), ("t2", t2, oblique)):
            nib.save(nib.Nifti1Image(array.astype(np.float32), affine), paths[name])
    return paths


def channel_args(paths: dict[str, Path], names=("--flair", "--t1", "--t1ce", "--t2")) -> list[str]:
    return [arg for flag, key in zip(names, ("flair", "t1", "t1ce", "t2")) for arg in (flag, str(paths[key]))]


def test_label_map_is_on_the_reference_grid_when_channels_come_on_other_grids(tmp_path, model, phantom, capsys):
    paths = write_case(tmp_path, phantom)
    output, probabilities = tmp_path / "out" / "labels.nii.gz", tmp_path / "out" / "probs.nii.gz"
    code = main(["segment", "--model", str(model), *channel_args(paths), "--output", str(output),
                 "--probabilities", str(probabilities), "--progress", "none"])
    assert code == 0, capsys.readouterr().err

    labels = nib.load(output)
    assert labels.shape == REFERENCE_SHAPE
    np.testing.assert_allclose(labels.affine, REFERENCE_AFFINE, atol=1e-5)
    assert labels.get_data_dtype() == np.uint8
    assert set(np.unique(np.asarray(labels.dataobj))) <= {0, 1, 2, 4}
    probs = nib.load(probabilities)
    assert probs.shape == (*REFERENCE_SHAPE, 3) and probs.get_data_dtype() == np.float32
    np.testing.assert_allclose(probs.affine, REFERENCE_AFFINE, atol=1e-5)
    values = np.asarray(probs.dataobj)
    assert values.min() >= 0 and values.max() <= 1
    shown = capsys.readouterr().out
    assert "Network: DynUNet" in shown and "Volumes (mL): WT" in shown
    assert "Inference: the whole volume at the model's input size 32×32×32" in shown


def test_native_resolution_says_how_it_ran_and_writes_labels_on_the_reference_grid(tmp_path, model, phantom, capsys):
    paths = write_case(tmp_path, phantom)
    output = tmp_path / "labels.nii.gz"
    code = main(["segment", "--model", str(model), *channel_args(paths), "--output", str(output), "--native",
                 "--progress", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    events = [json.loads(line) for line in captured.out.splitlines()]
    strategy = events[-1]["strategy"]
    assert strategy.startswith("native resolution") and "(auto: " in strategy
    assert {"event": "message", "text": f"Inference: {strategy}."} in events  # said before the network ran
    assert events[-1]["backend"].endswith(", fp32")  # what ran the network, at which precision (CPU: fp32)
    labels = nib.load(output)
    assert labels.shape == REFERENCE_SHAPE
    np.testing.assert_allclose(labels.affine, REFERENCE_AFFINE, atol=1e-5)


def test_brats2023_names_labels_option_and_json_result(tmp_path, model, phantom, capsys):
    paths = write_case(tmp_path, phantom, other_grids=False)
    output = tmp_path / "labels.nii.gz"
    code = main(["segment", "--model", str(model), *channel_args(paths, ("--t2f", "--t1n", "--t1c", "--t2w")),
                 "--output", str(output), "--labels", "brats2021", "--threshold", "0.2", "--progress", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    events = [json.loads(line) for line in captured.out.splitlines()]  # every stdout line is JSON
    result = events[-1]
    assert result["event"] == "result" and result["outputs"] == {"labels": str(output)}
    assert set(result["volumes_ml"]) == {"WT", "TC", "ET", "NCR", "ED"}
    assert any(e["event"] == "progress" and e["task"] == "segment" for e in events)
    labels = np.asarray(nib.load(output).dataobj)
    assert 4 not in np.unique(labels)
    voxel_ml = abs(np.linalg.det(REFERENCE_AFFINE[:3, :3])) / 1000
    assert result["volumes_ml"]["WT"] == pytest.approx((labels > 0).sum() * voxel_ml)
    assert result["volumes_ml"]["ET"] == pytest.approx((labels == 3).sum() * voxel_ml)


def test_original_checkpoint_with_its_config_and_tta(tmp_path, model, phantom, capsys):
    paths = write_case(tmp_path, phantom, other_grids=False)
    output = tmp_path / "labels.nii.gz"
    code = main(["segment", "--model", str(model.parent / "original.pth"),
                 "--config", str(model.parent / "config.json"), *channel_args(paths), "--output", str(output),
                 "--tta", "--progress", "none"])
    assert code == 0, capsys.readouterr().err
    assert nib.load(output).shape == REFERENCE_SHAPE


def error_cases(tmp_path: Path, model: Path, phantom: PhantomCase) -> dict[str, tuple[list[str], str]]:
    paths = write_case(tmp_path, phantom, other_grids=False)
    out = str(tmp_path / "labels.nii.gz")
    good = ["--model", str(model), *channel_args(paths), "--output", out]
    (tmp_path / "exists.nii.gz").write_bytes(b"")
    (tmp_path / "truncated.nii.gz").write_bytes(paths["t1"].read_bytes()[:200])
    three = tmp_path / "three.json"
    config = copy.deepcopy(TINY_CONFIG)
    config["model"]["in_channels"] = 3
    three.write_text(json.dumps(config))
    return {
        "missing image": ([*good[:-4], "--t2", str(tmp_path / "nope.nii.gz"), "--output", out], "does not exist"),
        "truncated image": ([*good[:4], "--t1", str(tmp_path / "truncated.nii.gz"), *good[6:]], "truncated.nii.gz"),
        "missing channel": ([*good[:-4], "--output", out], "t2"),
        "missing model": (["--model", str(tmp_path / "none.pth"), *good[2:]], "none.pth"),
        "output exists": ([*good[:-1], str(tmp_path / "exists.nii.gz")], "--overwrite"),
        "output is a folder": ([*good[:-1], str(tmp_path)], "directory"),
        "output not NIfTI": ([*good[:-1], str(tmp_path / "labels.png")], ".nii"),
        "unknown device": ([*good, "--device", "tpu"], "tpu"),
        "original weights without config": (["--model", str(model.parent / "original.pth"), *good[2:]], "config"),
        "config of another channel count": (["--model", str(model.parent / "original.pth"), "--config", str(three),
                                             *good[2:]], "original.pth"),
        "negative island size": ([*good, "--min-island-voxels", "-3"], "min-island-voxels"),
        "contradictory strategies": ([*good, "--sliding-window", "--native", "whole"], "--native whole"),
    }


@pytest.mark.parametrize("case", ["missing image", "truncated image", "missing channel", "missing model",
                                  "output exists", "output is a folder", "output not NIfTI", "unknown device",
                                  "original weights without config", "config of another channel count",
                                  "negative island size", "contradictory strategies"])
def test_bad_input_is_one_clear_line_and_a_non_zero_exit(tmp_path, model, phantom, capsys, case):
    argv, expected = error_cases(tmp_path, model, phantom)[case]
    code = main(["segment", *argv, "--progress", "none"])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("bratsunet segment: error:") and expected in err
    assert not (tmp_path / "labels.nii.gz").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_asking_for_a_missing_gpu_is_a_clear_error(tmp_path, model, phantom, capsys):
    argv, _ = error_cases(tmp_path, model, phantom)["unknown device"]
    code = main(["segment", *argv[:-1], "cuda"])
    assert code != 0 and "no CUDA GPU" in capsys.readouterr().err


def test_the_strategies_offered_are_the_ones_inference_knows():
    from BratsUNetLib.cli.arguments import inference as segment
    from BratsUNetLib.inference.options import NATIVE_STRATEGIES

    assert segment.NATIVE_STRATEGIES == NATIVE_STRATEGIES  # spelled out in the command so that --help stays instant


def test_segmentation_progress_has_a_growing_fraction_and_the_time_left(tmp_path, model, phantom, capsys):
    paths = write_case(tmp_path, phantom, other_grids=False)
    code = main(["segment", "--model", str(model), *channel_args(paths), "--output", str(tmp_path / "labels.nii.gz"),
                 "--tta", "--progress", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    steps = [json.loads(line) for line in captured.out.splitlines()]
    steps = [e for e in steps if e["event"] == "progress" and e["task"] == "segment"]
    fractions = [e["fraction"] for e in steps]
    assert len(steps) == 8 and fractions == sorted(set(fractions)) and fractions[-1] == 1.0  # 8 mirrored passes
    assert all(e["seconds_left"] >= 0 for e in steps) and steps[-1]["seconds_left"] == 0
