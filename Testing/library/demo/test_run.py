"""The demo end to end in a tiny setting: every report file is written, and the model is a usable checkpoint."""

import json
import time
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.image import imread

from BratsUNetLib.training import loop as training
from BratsUNetLib.cli.main import main
from BratsUNetLib.demo.run import DemoSettings, run_demo
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.evaluation.report import STRIP_PX


class EpochClock(ProgressReporter):
    """Reports nothing, and is the training's clock: one second per epoch reported.

    The demo trains for a wall-clock budget; on this clock the budget ends after the same number of epochs on
    any machine (a real 1-second budget gives one epoch on a slow machine and dozens on a fast one).
    """

    def __init__(self) -> None:
        super().__init__("none")
        self.epochs = 0

    def emit(self, event: str, **fields) -> None:
        self.epochs += event == "epoch"
        super().emit(event, **fields)

    def monotonic(self) -> float:
        return float(self.epochs)


def test_tiny_demo_writes_the_report_and_a_model_that_segment_accepts(tmp_path, monkeypatch):
    clock = EpochClock()
    monkeypatch.setattr(training, "time", SimpleNamespace(monotonic=clock.monotonic, perf_counter=time.perf_counter))
    # 2.5 s: after epoch 2 (2 s elapsed) one more epoch would end at 3 s, past the budget.
    settings = DemoSettings(output=tmp_path / "demo", minutes=2.5 / 60, n_training=2, n_validation=1, n_held_out=2,
                            case_shape=(48, 48, 40), network_shape=(32, 32, 32), filters=(4, 8, 16), seed=1)
    page = run_demo(settings, clock)

    report = tmp_path / "demo" / "report"
    assert page == report / "index.html"
    html = page.read_text()
    held_out = ["BraTS20_Phantom_004", "BraTS20_Phantom_005"]
    for case_id in held_out:
        png = imread(report / f"{case_id}.png")
        # Two images (FLAIR, T1ce) x (reference, prediction) columns, three views of 240 px plus two strips.
        assert png.shape[:2] == (3 * 240 + 2 * STRIP_PX, 4 * 240)
        assert f"{case_id}.png" in html and case_id in html
        assert (tmp_path / "demo" / "predictions" / f"{case_id}.nii.gz").exists()
    curves = imread(report / "training_curves.png")
    assert curves.ndim == 3 and curves.shape[0] > 100 and np.ptp(curves[..., :3]) > 0
    assert "training_curves.png" in html

    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    assert sorted(metrics["cases"]) == held_out
    assert set(metrics["mean"]) == {"WT", "TC", "ET"}
    assert all(0.0 <= metrics["mean"][r]["dice"] <= 1.0 for r in ("WT", "TC", "ET"))

    case = tmp_path / "demo" / "cases" / held_out[0] / held_out[0]
    output = tmp_path / "segmented.nii.gz"
    assert main(["segment", "--model", metrics["model"], "--flair", f"{case}_flair.nii.gz", "--t1",
                 f"{case}_t1.nii.gz", "--t1ce", f"{case}_t1ce.nii.gz", "--t2", f"{case}_t2.nii.gz",
                 "--output", str(output), "--progress", "none"]) == 0
    assert output.exists()


def test_demo_refuses_a_non_positive_budget(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path / "d"), "--minutes", "0", "--progress", "none"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--minutes must be positive" in error
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("arguments, complaint", [
    (["--minutes", "nan"], "--minutes must be positive"),
    (["--minutes", "-1"], "--minutes must be positive"),
    (["--minutes", "inf"], "--minutes must be positive"),
    (["--network-shape", "7"], "--network-shape 7 7 7 cannot pass through the demo's network: its 5 levels halve "
                               "each axis 4 times, so give one or three multiples of 16, e.g. 16 16 16"),
    (["--network-shape", "64", "60", "72"], "e.g. 64 64 80"),
    (["--network-shape", "64", "64"], "give one edge (a cube) or three"),
    (["--network-shape", "16"], "leaves a single voxel at the deepest of the network's 5 levels"),
    (["--network-shape", "4096"], "the demo's network cannot be trained here"),
    (["--shape", "8"], "--shape 8 8 8 is not usable"),
    (["--shape", "100000"], "would need about"),
    (["--cases", "0", "1", "1"], "at least 1 training"),
    (["--seed", "-1"], "--seed must be a whole number of 0 or more"),
])
def test_demo_checks_every_argument_before_writing_anything(tmp_path, capsys, arguments, complaint):
    assert main(["demo", "--output", str(tmp_path / "d"), "--progress", "none", *arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and error.startswith("bratsunet demo: error: ") and complaint in error, error
    assert not (tmp_path / "d").exists()


def test_demo_does_not_replace_an_earlier_demo_without_overwrite(tmp_path, capsys):
    page = tmp_path / "d" / "report" / "index.html"
    page.parent.mkdir(parents=True)
    page.write_text("the earlier report")
    assert main(["demo", "--output", str(tmp_path / "d"), "--minutes", "0.01", "--progress", "none"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "holds the results of an earlier demo (report)" in error
    assert "pass --overwrite" in error
    assert page.read_text() == "the earlier report" and sorted((tmp_path / "d").rglob("*")) == [page.parent, page]


def test_demo_with_overwrite_replaces_an_earlier_demo_and_trains_afresh(tmp_path, capsys):
    output = tmp_path / "d"
    (output / "report").mkdir(parents=True)
    (output / "report" / "index.html").write_text("the earlier report")
    (output / "training").mkdir()
    (output / "training" / "training_log.csv").write_bytes(b"\0\1\2 an earlier run's log, damaged")
    (output / "notes.txt").write_text("the user's own file")  # not one of the demo's: left alone
    assert main(["demo", "--output", str(output), "--overwrite", "--shape", "32", "--network-shape", "32",
                 "--cases", "1", "0", "1", "--minutes", "0.01", "--device", "cpu", "--progress", "none"]) == 0
    assert "the earlier report" not in (output / "report" / "index.html").read_text()
    log = (output / "training" / "training_log.csv").read_text()
    assert log.startswith("epoch,loss,lr,val_loss")  # a new run, not a resumed (or refused) one
    assert (output / "notes.txt").read_text() == "the user's own file"


# What ``demo_config`` built before it called :func:`BratsUNetLib.config.brats.brats_training_config` (computed with
# the earlier code): the demo's config file keeps every key and value.
DEMO_CONFIG = {'model': {'name': 'DynUNet',
           'spatial_dims': 3,
           'in_channels': 4,
           'out_channels': 3,
           'filters': [8, 16, 32, 64, 128],
           'kernel_size': [3, 3, 3, 3, 3],
           'strides': [1, 2, 2, 2, 2],
           'upsample_kernel_size': [2, 2, 2, 2],
           'deep_supervision': False},
 'optimizer': {'name': 'Adam', 'lr': 0.003},
 'loss': {'name': 'DiceCELoss', 'include_background': True, 'sigmoid': True},
 'scheduler': {'name': 'ReduceLROnPlateau', 'patience': 8, 'factor': 0.5, 'min_lr': 1e-05},
 'dataset': {'name': 'SegmentationDataset',
             'desired_shape': [64, 64, 64],
             'labels': [2, 1, 4],
             'setup_label_hierarchy': True,
             'resample': True,
             'crop_foreground': True,
             'normalization': 'NormalizeIntensityD',
             'normalization_kwargs': {'channel_wise': True, 'nonzero': False},
             'training': {'spatial_augmentations': [{'name': 'RandFlipd', 'prob': 0.5, 'spatial_axis': 0}]}},
 'training': {'batch_size': 2, 'validation_batch_size': 2, 'n_epochs': 1000, 'save_best': True, 'amp': True},
 'training_filenames': [{'image': ['/demo/cases/BraTS-001/BraTS-001_flair.nii.gz',
                                   '/demo/cases/BraTS-001/BraTS-001_t1.nii.gz',
                                   '/demo/cases/BraTS-001/BraTS-001_t1ce.nii.gz',
                                   '/demo/cases/BraTS-001/BraTS-001_t2.nii.gz'],
                         'label': '/demo/cases/BraTS-001/BraTS-001_seg.nii.gz'},
                        {'image': ['/demo/cases/BraTS-002/BraTS-002_flair.nii.gz',
                                   '/demo/cases/BraTS-002/BraTS-002_t1.nii.gz',
                                   '/demo/cases/BraTS-002/BraTS-002_t1ce.nii.gz',
                                   '/demo/cases/BraTS-002/BraTS-002_t2.nii.gz'],
                         'label': '/demo/cases/BraTS-002/BraTS-002_seg.nii.gz'}],
 'validation_filenames': [{'image': ['/demo/cases/BraTS-003/BraTS-003_flair.nii.gz',
                                     '/demo/cases/BraTS-003/BraTS-003_t1.nii.gz',
                                     '/demo/cases/BraTS-003/BraTS-003_t1ce.nii.gz',
                                     '/demo/cases/BraTS-003/BraTS-003_t2.nii.gz'],
                           'label': '/demo/cases/BraTS-003/BraTS-003_seg.nii.gz'}]}

DEMO_CONFIG_NO_VALIDATION = {'model': {'name': 'DynUNet',
           'spatial_dims': 3,
           'in_channels': 4,
           'out_channels': 3,
           'filters': [4, 8, 16],
           'kernel_size': [3, 3, 3],
           'strides': [1, 2, 2],
           'upsample_kernel_size': [2, 2],
           'deep_supervision': False},
 'optimizer': {'name': 'Adam', 'lr': 0.003},
 'loss': {'name': 'DiceCELoss', 'include_background': True, 'sigmoid': True},
 'scheduler': {'name': 'ReduceLROnPlateau', 'patience': 8, 'factor': 0.5, 'min_lr': 1e-05},
 'dataset': {'name': 'SegmentationDataset',
             'desired_shape': [32, 48, 64],
             'labels': [2, 1, 4],
             'setup_label_hierarchy': True,
             'resample': True,
             'crop_foreground': True,
             'normalization': 'NormalizeIntensityD',
             'normalization_kwargs': {'channel_wise': True, 'nonzero': False},
             'training': {'spatial_augmentations': [{'name': 'RandFlipd', 'prob': 0.5, 'spatial_axis': 0}]}},
 'training': {'batch_size': 2, 'validation_batch_size': 2, 'n_epochs': 1000, 'save_best': True, 'amp': True},
 'training_filenames': [{'image': ['/demo/cases/BraTS-001/BraTS-001_flair.nii.gz',
                                   '/demo/cases/BraTS-001/BraTS-001_t1.nii.gz',
                                   '/demo/cases/BraTS-001/BraTS-001_t1ce.nii.gz',
                                   '/demo/cases/BraTS-001/BraTS-001_t2.nii.gz'],
                         'label': '/demo/cases/BraTS-001/BraTS-001_seg.nii.gz'}],
 'validation_filenames': []}


@pytest.mark.parametrize(("settings", "expected"), [
    ({"n_training": 2, "n_validation": 1}, DEMO_CONFIG),
    ({"n_training": 1, "n_validation": 0, "network_shape": (32, 48, 64), "filters": (4, 8, 16)},
     DEMO_CONFIG_NO_VALIDATION),
], ids=["defaults", "no-validation"])
def test_demo_config_is_unchanged(settings, expected):
    """The demo's ``demo_config.json`` holds the same config as before: the same keys, values and sections."""
    from pathlib import Path

    from BratsUNetLib.demo.run import demo_config

    case_dirs = [Path(f"/demo/cases/BraTS-{i:03d}") for i in range(1, 4)]
    config = demo_config(DemoSettings(output=Path("/demo"), n_held_out=1, **settings), case_dirs)
    assert config == expected
    assert list(config) == list(expected)
