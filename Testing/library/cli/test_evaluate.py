"""``bratsunet evaluate``: files and folders, JSON and CSV results, grids, errors."""

import csv
import json

import numpy as np
import pytest

from BratsUNetLib.cli.main import main
from BratsUNetLib.errors import ExitCode
from BratsUNetLib.data.images import write_image

SHAPE = (40, 40, 40)
AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])  # BraTS-like LPS storage, 1 mm voxels
GOLDEN_DICE, GOLDEN_HD95 = 0.815078, 2.0  # ball r=8 against the same ball shifted by 2 voxels (METRICS.md)


def _ball_labels(centre, value=4) -> np.ndarray:
    grid = np.indices(SHAPE)
    inside = ((grid - np.array(centre)[:, None, None, None]) ** 2).sum(0) <= 64
    return np.where(inside, value, 0).astype(np.uint8)


def _write(path, labels, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(path, labels, affine, dtype=np.uint8)


def _evaluate(*argv: str) -> int:
    return main(["evaluate", "--progress", "none", *map(str, argv)])


def test_two_files_give_the_golden_metrics_for_every_region(tmp_path, capsys):
    reference = _write(tmp_path / "case_seg.nii.gz", _ball_labels((20, 20, 20)))
    prediction = _write(tmp_path / "prediction.nii.gz", _ball_labels((22, 20, 20)))
    output = tmp_path / "results" / "metrics.json"

    assert _evaluate("--prediction", prediction, "--reference", reference, "--output", output) == 0
    results = json.loads(output.read_text())
    assert list(results["cases"]) == ["case"]
    volume_ml = np.count_nonzero(_ball_labels((20, 20, 20))) / 1000  # 1 mm³ voxels; both balls lie inside
    for region in ("WT", "TC", "ET"):
        case = results["cases"]["case"][region]
        assert case["dice"] == pytest.approx(GOLDEN_DICE, abs=1e-6)
        assert case["hd95"] == pytest.approx(GOLDEN_HD95)
        assert case["volume_reference_ml"] == case["volume_prediction_ml"] == pytest.approx(volume_ml)
        assert results["mean"][region] == case
    table = capsys.readouterr().out
    assert "Dice WT" in table and "0.8151" in table and table.count("\n") >= 3


def test_prediction_on_another_grid_is_compared_on_the_reference_grid(tmp_path):
    reference = _write(tmp_path / "ref.nii.gz", _ball_labels((20, 20, 20)))
    # The same shifted ball stored left-handed (X reversed): different voxel order, same world positions.
    flipped_affine = AFFINE @ np.array([[-1.0, 0, 0, SHAPE[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    prediction = _write(tmp_path / "pred.nii.gz", _ball_labels((22, 20, 20))[::-1], flipped_affine)
    output = tmp_path / "metrics.json"
    assert _evaluate("--prediction", prediction, "--reference", reference, "--output", output) == 0
    wt = json.loads(output.read_text())["cases"]["ref"]["WT"]
    assert wt["dice"] == pytest.approx(GOLDEN_DICE, abs=1e-6) and wt["hd95"] == pytest.approx(GOLDEN_HD95)


def _folders(tmp_path):
    """References in the BraTS layout (case D has no prediction); predictions in both layouts, one unrelated."""
    references, predictions = tmp_path / "reference", tmp_path / "predictions"
    for case in ("caseA", "caseB", "caseC", "caseD"):
        _write(references / case / f"{case}_seg.nii.gz", _ball_labels((20, 20, 20)))
        write_image(references / case / f"{case}_flair.nii.gz", np.ones(SHAPE), AFFINE)  # not a label: ignored
    _write(predictions / "caseA.nii.gz", _ball_labels((20, 20, 20)))             # perfect
    _write(predictions / "caseB_prediction.nii.gz", _ball_labels((22, 20, 20)))  # matched by its prefix
    _write(predictions / "caseC" / "caseC_segmentation.nii.gz", np.zeros(SHAPE, np.uint8))  # a miss
    _write(predictions / "unrelated.nii.gz", _ball_labels((20, 20, 20)))
    write_image(predictions / "caseA_probabilities.nii.gz", np.zeros((*SHAPE, 3)), AFFINE)  # caseA has its own
    return predictions, references


def test_folders_are_matched_by_case_and_written_as_csv(tmp_path, capsys):
    predictions, references = _folders(tmp_path)
    output = tmp_path / "metrics.csv"
    assert _evaluate("--prediction", predictions, "--reference", references, "--output", output) == 0

    rows = list(csv.DictReader(output.open()))
    assert [row["case"] for row in rows] == ["caseA", "caseB", "caseC", "mean"]
    assert float(rows[0]["dice_WT"]) == 1.0 and float(rows[0]["hd95_ET"]) == 0.0
    assert float(rows[1]["dice_TC"]) == pytest.approx(GOLDEN_DICE, abs=1e-6)
    assert float(rows[2]["dice_ET"]) == 0.0 and float(rows[2]["hd95_ET"]) == pytest.approx(373.12866)
    assert float(rows[3]["dice_ET"]) == pytest.approx((1.0 + GOLDEN_DICE) / 3, abs=1e-6)
    assert float(rows[3]["hd95_WT"]) == pytest.approx((GOLDEN_HD95 + 373.128664) / 3)
    assert float(rows[2]["volume_prediction_ml_WT"]) == 0.0 and float(rows[2]["volume_reference_ml_WT"]) > 2.0
    captured = capsys.readouterr()
    assert "caseD" in captured.err and "unrelated" in captured.err  # unmatched cases are reported
    assert "caseA" in captured.out and "mean" in captured.out


def test_json_progress_gives_json_lines_only_with_the_result_last(tmp_path, capsys):
    predictions, references = _folders(tmp_path)
    output = tmp_path / "metrics.json"
    code = main(["evaluate", "--progress", "json", "--prediction", str(predictions), "--reference", str(references),
                 "--output", str(output)])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1]["event"] == "result" and set(events[-1]["cases"]) == {"caseA", "caseB", "caseC"}
    assert [e["done"] for e in events if e["event"] == "progress"] == [1, 2, 3]
    saved = json.loads(output.read_text())
    assert saved["unmatched_references"] == ["caseD"]
    assert saved["unmatched_predictions"] == ["caseA_probabilities", "unrelated"]
    assert saved["cases"] == events[-1]["cases"]


def test_brats2021_labels(tmp_path):
    reference = _write(tmp_path / "ref.nii.gz", _ball_labels((20, 20, 20), value=3))
    prediction = _write(tmp_path / "pred.nii.gz", _ball_labels((22, 20, 20), value=3))
    output = tmp_path / "m.json"
    assert _evaluate("--prediction", prediction, "--reference", reference, "--labels", "brats2021",
                     "--output", output) == 0
    assert json.loads(output.read_text())["cases"]["ref"]["ET"]["dice"] == pytest.approx(GOLDEN_DICE, abs=1e-6)
    # The same files read as BraTS 2020 labels: value 3 is not allowed, and the message says which file.
    assert _evaluate("--prediction", prediction, "--reference", reference) == ExitCode.USER_ERROR


def test_a_bad_output_extension_is_a_user_error(tmp_path, capsys):
    reference = _write(tmp_path / "ref.nii.gz", _ball_labels((20, 20, 20)))
    code = _evaluate("--prediction", reference, "--reference", reference, "--output", tmp_path / "metrics.txt")
    assert code == ExitCode.USER_ERROR
    error = capsys.readouterr().err
    assert "metrics.txt" in error and ".json or .csv" in error and "Traceback" not in error
    assert not (tmp_path / "metrics.txt").exists()


@pytest.mark.parametrize("problem", ["file-and-folder", "missing", "nothing-matches", "two-for-one", "wrong-labels"])
def test_unusable_inputs_are_one_line_errors(tmp_path, capsys, problem):
    reference = _write(tmp_path / "ref" / "case1" / "case1_seg.nii.gz", _ball_labels((20, 20, 20)))
    prediction = tmp_path / "pred"
    prediction.mkdir()
    if problem == "file-and-folder":
        argv, expected = ("--prediction", prediction, "--reference", reference), "both be folders"
    elif problem == "missing":
        argv, expected = ("--prediction", tmp_path / "nope", "--reference", reference), "does not exist"
    elif problem == "nothing-matches":
        _write(prediction / "case2.nii.gz", _ball_labels((20, 20, 20)))
        argv, expected = ("--prediction", prediction, "--reference", tmp_path / "ref"), "case1"
    elif problem == "two-for-one":
        _write(prediction / "case1_a.nii.gz", _ball_labels((20, 20, 20)))
        _write(prediction / "case1_b.nii.gz", _ball_labels((20, 20, 20)))
        argv, expected = ("--prediction", prediction, "--reference", tmp_path / "ref"), "Two predictions match"
    else:
        _write(prediction / "case1.nii.gz", _ball_labels((20, 20, 20), value=5))
        argv, expected = ("--prediction", prediction, "--reference", tmp_path / "ref"), "case1.nii.gz contains label"
    assert _evaluate(*argv) == ExitCode.USER_ERROR
    error = capsys.readouterr().err.strip()
    assert expected in error.replace("'", "") and len(error.splitlines()) == 1
