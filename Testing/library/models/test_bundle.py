"""MONAI bundles read as data: a small bundle built here (the model zoo's BraTS bundle's structure: SegResNet, the
four channels in the order T1c, T1, T2, FLAIR, z-score of the non-zero voxels, sliding windows, sigmoid TC/WT/ET
turned into labels 4 > 1 > 2), imported and segmented by ``bratsunet segment``, must give MONAI's own pipeline's
label map voxel for voxel; what a bundle could run is refused."""

from __future__ import annotations

import copy
import io
import json
import pickle
import re
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai import transforms as mt
from monai.inferers import SlidingWindowInferer
from monai.networks.nets import SegResNet

from BratsUNetLib.cli.main import main
from BratsUNetLib.errors import CheckpointError
from BratsUNetLib.models.bundle import BundleError, import_bundle, read_bundle
from BratsUNetLib.models.checkpoint import describe_checkpoint
from BratsUNetLib.phantoms.generate import generate_case, write_case
from small_bundle import CHANNEL_ORDER, inference_config, write_bundle

@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict[str, Path]:
    # 48×48×40: sliding windows of 32³ at overlap 0.5 overlap on every axis, and the last axis is padded.
    return write_case(generate_case(shape=(48, 48, 40), seed=11), tmp_path_factory.mktemp("case"), "BraTS_B_001")


def monai_pipeline_labels(bundle: Path, files: list[Path]) -> np.ndarray:
    """The bundle run the way MONAI runs it: its transforms, inferer and post-processing, called directly."""
    config = json.loads(zipfile.ZipFile(bundle).read("small_brats/configs/inference.json"))
    network = SegResNet(**{k: v for k, v in config["network_def"].items() if k != "_target_"})
    network.load_state_dict(torch.load(io.BytesIO(
        zipfile.ZipFile(bundle).read("small_brats/models/model.pt")), weights_only=True))
    network.eval()
    data = mt.Compose([mt.LoadImaged(keys="image", image_only=False),
                       mt.NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True)])(
        {"image": [str(path) for path in files]})
    inferer = SlidingWindowInferer(**{k: v for k, v in config["inferer"].items() if k != "_target_"})
    with torch.inference_mode():
        logits = inferer(data["image"].as_tensor().unsqueeze(0), network)[0]
    regions = mt.AsDiscrete(threshold=0.5)(torch.sigmoid(logits))
    x = regions  # the bundle's labelling Lambdad, written out
    labels = torch.where(x[[2]] > 0, 4, torch.where(x[[0]] > 0, 1, torch.where(x[[1]] > 0, 2, 0)))
    return labels[0].numpy().astype(np.uint8)


def test_a_bundle_segments_as_monais_own_pipeline_voxel_for_voxel(tmp_path, case, capsys):
    bundle = write_bundle(tmp_path / "small_brats.zip")
    checkpoint = import_bundle(bundle, tmp_path / "small_brats.pth")
    description = describe_checkpoint(checkpoint)
    assert description["channels"] == list(CHANNEL_ORDER)
    assert description["regions"] == ["WT", "TC", "ET"]

    output = tmp_path / "labels.nii.gz"
    argv = ["segment", "--model", str(checkpoint), "--output", str(output), "--backend", "eager",
            "--device", "cpu", "--progress", "none"]
    for name in ("flair", "t1", "t1ce", "t2"):
        argv += [f"--{name}", str(case[name])]
    assert main(argv) == 0
    shown = capsys.readouterr().out
    assert "sliding windows of 32×32×32" in shown and "backend eager, fp32." in shown
    ours = np.asarray(nib.load(output).dataobj)
    theirs = monai_pipeline_labels(bundle, [case[name] for name in CHANNEL_ORDER])
    assert ours.shape == theirs.shape == (48, 48, 40)
    assert set(np.unique(theirs)) > {0}, "random weights should label something, else the test proves little"
    np.testing.assert_array_equal(ours, theirs)
    # The label map lies on the grid of the model's first channel (T1c).
    np.testing.assert_allclose(nib.load(output).affine, nib.load(case["t1ce"]).affine)


def test_the_bundle_is_read_from_its_folder_as_from_its_zip(tmp_path):
    bundle = write_bundle(tmp_path / "b.zip")
    zipfile.ZipFile(bundle).extractall(tmp_path / "unpacked")
    from_zip, from_folder = read_bundle(bundle), read_bundle(tmp_path / "unpacked" / "small_brats")
    assert from_zip.config == from_folder.config
    assert from_zip.config["dataset"]["native_strategy"] == "windows"
    assert from_zip.config["dataset"]["label_rule"] == "priority"
    assert from_zip.output_regions == ["TC", "WT", "ET"]


def spoiled(change) -> dict:
    config = inference_config()
    change(config)
    return config


@pytest.mark.parametrize("change, message", [
    (lambda c: c["network_def"].update(in_channels="$__import__('os').system('touch {canary}') or 4"),
     "which BratsUNet does not evaluate"),
    (lambda c: c["network_def"].update(_target_="os.system"), "not a MONAI network"),
    (lambda c: c["preprocessing"]["transforms"].insert(1, {"_target_": "Spacingd", "keys": "image",
                                                          "pixdim": [1, 1, 1]}), "Spacingd(pixdim)"),
    (lambda c: c["postprocessing"]["transforms"][3].update(
        func="$lambda x: __import__('os').system('touch {canary}')"),
     "labels the outputs with an expression BratsUNet does not read"),
    (lambda c: c["postprocessing"]["transforms"][3].update(
        func="$lambda x: torch.where(x[[0]] > 0, 4, torch.where(x[[2]] > 0, 1, torch.where(x[[1]] > 0, 2, 0)))"),
     "labels the regions"),
    (lambda c: c["inferer"].update(_target_="SaliencyInferer"), "its inferer is SaliencyInferer"),
    (lambda c: c["network_def"].update(in_channels="@nowhere"), "names nothing"),
])
def test_what_a_bundle_would_run_or_bratsunet_cannot_reproduce_is_refused_in_one_line(tmp_path, change, message):
    canary = tmp_path / "canary"
    config = json.loads(json.dumps(spoiled(change)).replace("{canary}", str(canary)))
    bundle = write_bundle(tmp_path / "bad.zip", config)
    with pytest.raises(BundleError, match=re.escape(message)) as error:
        import_bundle(bundle, tmp_path / "bad.pth")
    assert "\n" not in str(error.value)
    assert not canary.exists() and not (tmp_path / "bad.pth").exists()


class _Runs:
    def __reduce__(self):
        return (print, ("this would run",))


def test_weights_that_would_run_code_are_refused(tmp_path):
    bundle = write_bundle(tmp_path / "b.zip", weights=pickle.dumps({"model": _Runs()}))
    with pytest.raises(CheckpointError, match="only plain weights are ever loaded"):
        import_bundle(bundle, tmp_path / "b.pth")
    assert not (tmp_path / "b.pth").exists()


def test_files_that_are_not_bundles_are_refused_in_one_line(tmp_path):
    (tmp_path / "notes.zip").write_text("not a zip")
    with pytest.raises(BundleError, match="not a zip file"):
        read_bundle(tmp_path / "notes.zip")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as empty:
        empty.writestr("README.md", "nothing")
    with pytest.raises(BundleError, match="has no configs/inference.json"):
        read_bundle(tmp_path / "empty.zip")
    bundle = write_bundle(tmp_path / "b.zip")
    bad_json = tmp_path / "bad_json.zip"
    with zipfile.ZipFile(bundle) as source, zipfile.ZipFile(bad_json, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            target.writestr(item, b"[" * 100_000 if item.filename.endswith("inference.json") else data)
    with pytest.raises(BundleError, match="not valid JSON"):
        read_bundle(bad_json)
    config = copy.deepcopy(inference_config())
    assert read_bundle(write_bundle(tmp_path / "again.zip", config)).channels == list(CHANNEL_ORDER)
