"""``bratsunet models`` and model names wherever ``--model`` takes a file, offline: the catalogue points at a server
on 127.0.0.1 started here that serves a small MONAI bundle built from a seed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from file_server import file_server
from library_support import TINY_CONFIG
from small_bundle import write_bundle

from BratsUNetLib.cli.main import main
from BratsUNetLib.models.catalogue import CATALOGUE_ENV
from BratsUNetLib.models.downloads import MODELS_DIR_ENV
from BratsUNetLib.phantoms.generate import generate_case, write_case


@pytest.fixture
def catalogue(tmp_path, monkeypatch):
    """A catalogue of one bundle (``small_brats``, its sha256 published) served from 127.0.0.1; the models folder
    is the test's own."""
    bundle = write_bundle(tmp_path / "small_brats.zip").read_bytes()
    with file_server() as server:
        server.files["/small_brats.zip"] = bundle
        entry = {"name": "small_brats", "url": f"{server.url}/small_brats.zip", "format": "monai-bundle",
                 "sha256": hashlib.sha256(bundle).hexdigest(), "title": "Small BraTS bundle"}
        path = tmp_path / "catalogue.json"
        path.write_text(json.dumps({"models": [entry]}))
        monkeypatch.setenv(CATALOGUE_ENV, str(path))
        monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "models"))
        server.catalogue = path
        yield server


def segment_argv(case: dict, output: Path, model: str) -> list[str]:
    argv = ["segment", "--model", model, "--output", str(output), "--backend", "eager", "--device", "cpu",
            "--progress", "none"]
    for name in ("flair", "t1", "t1ce", "t2"):
        argv += [f"--{name}", str(case[name])]
    return argv


def test_a_model_name_is_downloaded_converted_and_segments(catalogue, tmp_path, capsys):
    case = write_case(generate_case(shape=(40, 40, 32), seed=5), tmp_path / "cases", "BraTS_M_001")
    assert main(["models", "list", "--progress", "none"]) == 0
    assert "small_brats  downloadable" in capsys.readouterr().out
    assert main(segment_argv(case, tmp_path / "labels.nii.gz", "small_brats")) == 0
    labels = nib.load(tmp_path / "labels.nii.gz")
    assert labels.shape == (40, 40, 32) and set(np.unique(np.asarray(labels.dataobj))) <= {0, 1, 2, 4}
    models = tmp_path / "models"
    assert sorted(path.name for path in models.iterdir()) == ["downloads", "small_brats.pth"]
    assert main(["models", "list", "--progress", "json"]) == 0
    (result,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"result"' in line]
    assert result["models"] == [{"name": "small_brats", "state": "downloaded", "path": str(models / "small_brats.pth"),
                                 "title": "Small BraTS bundle"}]
    # A second use reads the converted model: no download.
    requests_before = len(catalogue.ranges)
    assert main(segment_argv(case, tmp_path / "again.nii.gz", "small_brats")) == 0
    assert len(catalogue.ranges) == requests_before


def test_a_published_bundle_that_changed_on_the_server_is_refused_and_nothing_is_kept(catalogue, tmp_path, capsys):
    catalogue.files["/small_brats.zip"] = write_bundle(tmp_path / "other.zip", seed=1).read_bytes()
    assert main(["models", "download", "small_brats", "--progress", "none"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "is not the published file" in error[0] and "Traceback" not in error[0]
    models = tmp_path / "models"
    assert not (models / "small_brats.pth").exists()
    assert [path.name for path in (models / "downloads").iterdir()] == [".locks"]  # an empty lock file only
    assert [path.stat().st_size for path in (models / "downloads" / ".locks").iterdir()] == [0]


def test_import_options_given_to_another_action_are_refused(catalogue, capsys):
    assert main(["models", "download", "small_brats", "--name", "other", "--progress", "none"]) == 2
    assert "--name and --overwrite are for models import" in capsys.readouterr().err
    assert main(["models", "list", "--overwrite", "--progress", "none"]) == 2
    assert catalogue.ranges == []  # refused before anything was fetched


def test_an_unknown_name_is_one_line_that_says_where_names_are(catalogue, tmp_path, capsys):
    case = write_case(generate_case(shape=(40, 40, 32), seed=5), tmp_path / "cases", "BraTS_M_001")
    assert main(segment_argv(case, tmp_path / "labels.nii.gz", "no_such_model")) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "'no_such_model' is neither a model file nor a model name" in error[0]
    assert "small_brats" in error[0] and "bratsunet models list" in error[0]


def test_a_local_bundle_is_imported_by_name_and_not_replaced_without_overwrite(catalogue, tmp_path, capsys):
    bundle = write_bundle(tmp_path / "My Bundle.zip", seed=2)
    assert main(["models", "import", str(bundle), "--progress", "none"]) == 0
    imported = tmp_path / "models" / "my_bundle.pth"
    assert imported.is_file() and "--model my_bundle" in capsys.readouterr().out
    before = imported.read_bytes()
    assert main(["models", "import", str(bundle), "--name", "my_bundle", "--progress", "none"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert imported.read_bytes() == before
    assert main(["models", "list", "--progress", "none"]) == 0
    shown = capsys.readouterr().out
    assert any(line.split()[:2] == ["my_bundle", "imported"] for line in shown.splitlines())


def test_predict_downloads_a_named_model_only_once_its_outputs_have_passed_their_checks(catalogue, tmp_path, capsys):
    case = write_case(generate_case(shape=(40, 40, 32), seed=5), tmp_path / "cases", "BraTS_M_001")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**TINY_CONFIG, "test_filenames": [
        {"image": [str(case[name]) for name in ("flair", "t1", "t1ce", "t2")], "label": str(case["seg"])}]}))
    out = tmp_path / "out"
    out.mkdir()
    (out / "BraTS_M_001_flair.nii.gz").write_bytes(b"an earlier result")
    argv = ["predict", "--config_filename", str(config), "--model_filename", "small_brats", "--output_directory",
            str(out), "--segment", "--progress", "none"]
    assert main(argv) == 2
    assert "exist" in capsys.readouterr().err and catalogue.ranges == []  # refused before any download
    assert main([*argv, "--overwrite"]) == 0
    labels = nib.load(out / "BraTS_M_001_flair_seg.nii.gz")
    assert labels.shape == (40, 40, 32) and set(np.unique(np.asarray(labels.dataobj))) <= {0, 1, 2, 4}
    assert (tmp_path / "models" / "small_brats.pth").is_file()
