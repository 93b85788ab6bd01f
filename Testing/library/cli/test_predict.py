"""``bratsunet predict``: the original predict.py flags and outputs, label maps, and user errors."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from library_support import TINY_CONFIG

from BratsUNetLib.models.checkpoint import save_checkpoint
from BratsUNetLib.cli.main import main
from BratsUNetLib.config.loading import load_config
from BratsUNetLib.inference.writing import predict_group
from BratsUNetLib.data.labels import regions_to_labels
from BratsUNetLib.models.networks import build_network
from BratsUNetLib.phantoms.generate import brats_affine, generate_case, write_case

CHANNELS = ("flair", "t1", "t1ce", "t2")
# Two phantom cases of different shapes, one stored right-handed and one left-handed.
CASES = {"BraTS20_Validation_001": ((36, 40, 32), False), "BraTS20_Validation_002": ((40, 36, 32), True)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Path:
    """A folder with two cases, a config listing them as test cases, a BratsUNet checkpoint and the same
    weights as an original bare state_dict."""
    folder = tmp_path_factory.mktemp("predict")
    cases = []
    for seed, (case, (shape, left_handed)) in enumerate(CASES.items()):
        paths = write_case(generate_case(shape, seed=seed, left_handed=left_handed), folder, case)
        cases.append({"image": [str(paths[channel]) for channel in CHANNELS], "label": str(paths["seg"])})
    config = {**copy.deepcopy(TINY_CONFIG), "test_filenames": cases, "bratsvalidation_filenames": cases[:1]}
    (folder / "config.json").write_text(json.dumps(config))
    torch.manual_seed(3)
    network = build_network(TINY_CONFIG["model"])
    save_checkpoint(folder / "model.pth", network, config=load_config(config), channels=list(CHANNELS))
    torch.save(network.state_dict(), folder / "original.pth")
    return folder


def grid(case: str) -> tuple[tuple[int, ...], np.ndarray]:
    shape, left_handed = CASES[case]
    return shape, brats_affine(shape, left_handed)


def predict(setup: Path, out: Path, *extra: str, model: str = "model.pth") -> int:
    return main(["predict", "--config_filename", str(setup / "config.json"), "--model_filename", str(setup / model),
                 "--output_directory", str(out), "--progress", "none", *extra])


def test_probability_maps_per_case_on_the_first_inputs_grid(setup, tmp_path, capsys):
    assert predict(setup, tmp_path / "out", "--nthreads", "1", "--ngpus", "0", "--pin_memory") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "BraTS20_Validation_001_flair.nii.gz", "BraTS20_Validation_002_flair.nii.gz"]
    for case in CASES:
        shape, affine = grid(case)
        image = nib.load(tmp_path / "out" / f"{case}_flair.nii.gz")
        assert image.shape == (*shape, 3) and image.get_data_dtype() == np.float32
        np.testing.assert_allclose(image.affine, affine, atol=1e-5)
        values = np.asarray(image.dataobj)
        assert 0 <= values.min() and values.max() <= 1 and values.max() > 0
    assert "Predicted 2 case(s)" in capsys.readouterr().out



def test_native_resolution_and_backend_options_reach_the_network(setup, tmp_path):
    """``--native whole`` runs the network on the padded native grid (not resized): the maps differ from the
    resized run's but keep the case's grid; ``--native windows --backend eager`` agrees with ``--sliding-window``."""
    assert predict(setup, tmp_path / "resized") == 0
    assert predict(setup, tmp_path / "whole", "--native", "whole") == 0
    assert predict(setup, tmp_path / "windows", "--native", "windows", "--backend", "eager") == 0
    assert predict(setup, tmp_path / "sliding", "--sliding-window") == 0
    name = "BraTS20_Validation_001_flair.nii.gz"
    resized, whole, windows, sliding = (np.asarray(nib.load(tmp_path / run / name).dataobj)
                                        for run in ("resized", "whole", "windows", "sliding"))
    assert whole.shape == resized.shape == (*grid("BraTS20_Validation_001")[0], 3)
    assert np.abs(whole - resized).max() > 1e-3
    np.testing.assert_allclose(windows, sliding, atol=1e-5)


def test_segment_writes_label_maps_that_follow_the_threshold(setup, tmp_path):
    assert predict(setup, tmp_path, "--segment", "--threshold", "0.3") == 0
    for case in CASES:
        shape, affine = grid(case)
        probabilities = np.moveaxis(np.asarray(nib.load(tmp_path / f"{case}_flair.nii.gz").dataobj), -1, 0)
        labels = nib.load(tmp_path / f"{case}_flair_seg.nii.gz")
        assert labels.shape == shape and labels.get_data_dtype() == np.uint8
        np.testing.assert_allclose(labels.affine, affine, atol=1e-5)
        expected = regions_to_labels(probabilities, threshold=0.3)
        assert (np.asarray(labels.dataobj) == expected).all()
        assert (expected != regions_to_labels(probabilities, threshold=0.5)).any()  # the threshold mattered


def test_original_state_dict_gives_the_same_predictions_and_no_overwrite_skips(setup, tmp_path):
    assert predict(setup, tmp_path / "a", "--group", "bratsvalidation") == 0
    assert predict(setup, tmp_path / "b", "--group", "bratsvalidation", model="original.pth") == 0
    name = "BraTS20_Validation_001_flair.nii.gz"
    a, b = nib.load(tmp_path / "a" / name), nib.load(tmp_path / "b" / name)
    np.testing.assert_allclose(np.asarray(a.dataobj), np.asarray(b.dataobj), atol=1e-6)

    output = tmp_path / "a" / name
    os.utime(output, ns=(0, 0))
    assert predict(setup, tmp_path / "a", "--group", "bratsvalidation", "--no_overwrite") == 0
    assert output.stat().st_mtime_ns == 0
    # Without --overwrite an existing output is an error before any work; with it the output is replaced.
    assert predict(setup, tmp_path / "a", "--group", "bratsvalidation") == 2
    assert output.stat().st_mtime_ns == 0
    assert predict(setup, tmp_path / "a", "--group", "bratsvalidation", "--overwrite") == 0
    assert output.stat().st_mtime_ns > 0


def test_activation_none_writes_raw_outputs_and_json_progress_counts_cases(setup, tmp_path, capsys):
    code = main(["predict", "--config_filename", str(setup / "config.json"), "--model_filename",
                 str(setup / "model.pth"), "--output_directory", str(tmp_path), "--activation", "none",
                 "--progress", "json"])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["done"] for e in events if e["event"] == "progress" and e["task"] == "predict"] == [1, 2]
    assert events[-1]["event"] == "result" and len(events[-1]["cases"]) == 2
    values = np.asarray(nib.load(tmp_path / "BraTS20_Validation_001_flair.nii.gz").dataobj)
    assert values.min() < 0 or values.max() > 1


def test_predict_group_averages_several_models_for_the_training_command(setup, tmp_path):
    written = predict_group(setup / "config.json", [setup / "model.pth", setup / "original.pth"], "bratsvalidation",
                            tmp_path, segment=True)
    assert written == [{"case": "BraTS20_Validation_001_flair",
                        "labels": str(tmp_path / "BraTS20_Validation_001_flair_seg.nii.gz"),
                        "probabilities": str(tmp_path / "BraTS20_Validation_001_flair.nii.gz")}]


@pytest.mark.parametrize("extra, expected", [
    (["--use_contours"], "--use_contours"),
    (["--segment", "--sum"], "--sum does not apply to a label hierarchy"),
    (["--sum"], "add --segment"),
    (["--threshold", "0.3"], "add --segment"),
    (["--group", "training"], "choose --group among: bratsvalidation, test"),
    (["--machine_config_filename", "/no/such/machine.json"], "machine.json"),
    (["--device", "tpu"], "Unknown device 'tpu'"),
    (["--segment", "--threshold", "1.5"], "outside 0..1"),
])
def test_bad_flags_are_one_clear_line_and_a_non_zero_exit(setup, tmp_path, capsys, extra, expected):
    code = predict(setup, tmp_path, *extra)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("bratsunet predict: error:") and expected in err
    assert not any(tmp_path.glob("*.nii.gz"))


def test_a_missing_case_file_names_the_case(setup, tmp_path, capsys):
    config = json.loads((setup / "config.json").read_text())
    config["test_filenames"][1]["image"][2] = str(tmp_path / "gone_t1ce.nii.gz")
    (tmp_path / "config.json").write_text(json.dumps(config))
    code = main(["predict", "--config_filename", str(tmp_path / "config.json"), "--model_filename",
                 str(setup / "model.pth"), "--output_directory", str(tmp_path / "out"), "--progress", "none"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    assert "BraTS20_Validation_002_flair" in err and "gone_t1ce.nii.gz" in err
