"""The demo end to end in a tiny setting: every report file is written, and the model is a usable checkpoint."""

import json

import numpy as np
from matplotlib.image import imread

from BratsUNetLib.cli import main
from BratsUNetLib.demo import DemoSettings, run_demo
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.report import STRIP_PX


def test_tiny_demo_writes_the_report_and_a_model_that_segment_accepts(tmp_path):
    settings = DemoSettings(output=tmp_path / "demo", minutes=0.02, n_training=2, n_validation=1, n_held_out=2,
                            case_shape=(48, 48, 40), network_shape=(32, 32, 32), filters=(4, 8, 16), seed=1)
    page = run_demo(settings, ProgressReporter("none"))

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
