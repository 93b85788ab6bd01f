"""No command loses or changes a user's file (issue 13, section 2), through the command line.

Each defect the issue names, as a user meets it:

- ``predict --output_directory <the case folder>`` would write over ``<case>_flair.nii.gz``: refused;
- ``predict`` over cases in different folders whose first images share a file name wrote both to one path:
  each case gets its own file;
- ``segment --output <one of its inputs> --overwrite`` replaced the input image: refused, whatever the path
  looks like (``..``, a symbolic link, a hard link);
- ``evaluate --output`` replaced an existing file without asking: it asks for ``--overwrite``;
- an interruption between the label map and the probability map left a label file without its partner: the
  next run finishes the pair (or removes the half that cannot be finished);
- two trainings in one folder mixed their files: the second refuses while the first holds the folder's lock,
  and a lock left by a dead run is taken over with a message.

Every input file is compared by its SHA-256 before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from reliability_support import MODALITIES, TINY_CONFIG

from BratsUNetLib.fileio import JOURNAL_PREFIX
from BratsUNetLib.phantoms.generate import generate_case, write_case
from BratsUNetLib.training.lock import LOCK_FILENAME, RunLock, process_start_time


def hashes(*folders: Path) -> dict[str, str]:
    """SHA-256 of every file below ``folders``, by path."""
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in folders for path in sorted(folder.rglob("*")) if path.is_file()}


def one_error_line(err: list[str], command: str) -> str:
    assert len(err) == 1, err
    assert err[0].startswith(f"bratsunet {command}: error: ") and "Traceback" not in err[0], err
    return err[0]


def segment_argv(models: dict[str, Path], case_files: dict[str, Path], output: Path, *extra: str) -> list[str]:
    argv = ["segment", "--model", str(models["model"]), "--output", str(output), "--device", "cpu"]
    for modality in MODALITIES:
        argv += [f"--{modality}", str(case_files[modality])]
    return [*argv, *extra]


def predict_config(folder: Path, cases: list[dict[str, Path]]) -> Path:
    config = {**json.loads(json.dumps(TINY_CONFIG)),
              "test_filenames": [{"image": [str(case[m]) for m in MODALITIES], "label": str(case["seg"])}
                                 for case in cases]}
    path = folder / "predict.json"
    path.write_text(json.dumps(config))
    return path


def predict_argv(models: dict[str, Path], config: Path, output_dir: Path, *extra: str) -> list[str]:
    return ["predict", "--config_filename", str(config), "--model_filename", str(models["model"]),
            "--output_directory", str(output_dir), "--ngpus", "0", *extra]


# ------------------------------------------------------------------------------------------------ outputs

def test_predict_into_the_case_folder_is_refused_before_any_work(tmp_path, models, cli):
    case = write_case(generate_case((32, 32, 32), seed=1), tmp_path, "BraTS20_Validation_001")
    case_folder = case["flair"].parent  # <tmp>/BraTS20_Validation_001/
    config = predict_config(tmp_path, [case])
    before = hashes(case_folder)
    for extra in ((), ("--overwrite",)):
        code, _, err = cli(predict_argv(models, config, case_folder, *extra))
        line = one_error_line(err, "predict")
        assert code == 2 and "BraTS20_Validation_001_flair.nii.gz" in line and "same file as the input" in line
    assert hashes(case_folder) == before  # nothing written, nothing replaced, no temporary file left


def test_cases_whose_first_images_share_a_name_get_one_output_each(tmp_path, models, cli):
    cases = []
    for seed, folder in enumerate(("site_a", "site_b")):
        written = write_case(generate_case((32, 32, 32), seed=seed), tmp_path, folder)  # <tmp>/<folder>/
        # Both folders hold flair.nii.gz, t1.nii.gz, ...: the original named both outputs flair.nii.gz.
        cases.append({name: path.rename(path.with_name(f"{name}.nii.gz")) for name, path in written.items()})
    config = predict_config(tmp_path, cases)
    before = hashes(tmp_path / "site_a", tmp_path / "site_b")
    code, out, err = cli(predict_argv(models, config, tmp_path / "out", "--segment"))
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "site_a_flair.nii.gz", "site_a_flair_seg.nii.gz", "site_b_flair.nii.gz", "site_b_flair_seg.nii.gz"]
    first, second = (np.asarray(nib.load(tmp_path / "out" / f"{site}_flair.nii.gz").dataobj)
                     for site in ("site_a", "site_b"))
    assert not np.array_equal(first, second)  # two cases, two different results
    assert hashes(tmp_path / "site_a", tmp_path / "site_b") == before
    assert "Predicted 2 case(s)" in out


def test_output_names_never_clash_and_stay_the_originals_where_they_can():
    """Names as the original where unique; each case of a clash gets its folder's name, then its position."""
    from BratsUNetLib.inference.writing import prediction_names

    first_images = ["/a/case/flair.nii.gz", "/b/case/flair.nii.gz", "/c/x/flair.nii.gz", "/d/y.nii.gz",
                    "/e/y_seg.nii.gz", "/f/Z.nii", "/g/z.nii", "/h/BraTS_001_flair.nii.gz"]
    names = prediction_names(first_images)
    assert names == ["case_flair_case1", "case_flair_case2", "x_flair", "d_y", "e_y_seg", "f_Z", "g_z",
                     "BraTS_001_flair"]
    files = [f"{name}{suffix}".casefold() for name in names for suffix in (".nii.gz", "_seg.nii.gz")]
    assert len(set(files)) == len(files)


def test_predict_lists_existing_outputs_before_any_work(tmp_path, models, case_files, cli):
    config = predict_config(tmp_path, [case_files])
    out = tmp_path / "out"
    assert cli(predict_argv(models, config, out, "--segment"))[0] == 0
    before = hashes(out)
    code, _, err = cli(predict_argv(models, config, out, "--segment"))
    line = one_error_line(err, "predict")
    assert code == 2 and "2 output(s) exist" in line and "--overwrite" in line and "_seg.nii.gz" in line
    assert hashes(out) == before
    assert cli(predict_argv(models, config, out, "--segment", "--no_overwrite"))[0] == 0  # skips the done case
    assert hashes(out) == before
    assert cli(predict_argv(models, config, out, "--segment", "--overwrite"))[0] == 0


def test_predict_into_a_file_is_one_line(tmp_path, models, case_files, cli):
    config = predict_config(tmp_path, [case_files])
    (tmp_path / "a_file").write_text("mine")
    code, _, err = cli(predict_argv(models, config, tmp_path / "a_file"))
    assert code == 2 and "is a file, not a folder" in one_error_line(err, "predict")
    assert (tmp_path / "a_file").read_text() == "mine"


@pytest.mark.parametrize("spelling", ["same path", "with ..", "symbolic link", "hard link"])
def test_segment_never_writes_over_an_input_even_with_overwrite(tmp_path, models, case_files, cli, spelling):
    inputs = {m: tmp_path / case_files[m].name for m in MODALITIES}
    for modality, path in inputs.items():
        shutil.copyfile(case_files[modality], path)
    target = inputs["t1ce"]
    output = {"same path": lambda: target,
              "with ..": lambda: (tmp_path / "sub").mkdir() or tmp_path / "sub" / ".." / target.name,
              "symbolic link": lambda: (tmp_path / "link.nii.gz").symlink_to(target) or tmp_path / "link.nii.gz",
              "hard link": lambda: os.link(target, tmp_path / "hard.nii.gz") or tmp_path / "hard.nii.gz"}[spelling]()
    before = hashes(tmp_path)
    code, _, err = cli(segment_argv(models, inputs, output, "--overwrite"))
    line = one_error_line(err, "segment")
    assert code == 2 and "same file as the input --t1ce" in line and "not even with --overwrite" in line
    assert hashes(tmp_path) == before


def test_segment_model_is_an_input_too(tmp_path, models, case_files, cli):
    model = tmp_path / "model.nii.gz"  # a checkpoint under an image name, given as --output by mistake
    shutil.copyfile(models["model"], model)
    argv = segment_argv({"model": model}, case_files, model, "--overwrite")
    code, _, err = cli(argv)
    assert code == 2 and "same file as the input --model" in one_error_line(err, "segment")
    assert model.read_bytes() == models["model"].read_bytes()


def test_segment_an_output_name_longer_than_the_file_system_allows_is_one_line(tmp_path, models, case_files, cli):
    code, _, err = cli(segment_argv(models, case_files, tmp_path / ("x" * 300 + ".nii.gz")))
    assert code == 2 and "characters long" in one_error_line(err, "segment")
    assert list(tmp_path.iterdir()) == []


def test_evaluate_asks_before_replacing_its_output(tmp_path, case_files, cli):
    output = tmp_path / "metrics.json"
    output.write_text("my notes\n")
    argv = ["evaluate", "--prediction", str(case_files["seg"]), "--reference", str(case_files["seg"]),
            "--output", str(output)]
    code, _, err = cli(argv)
    assert code == 2 and "pass --overwrite" in one_error_line(err, "evaluate")
    assert output.read_text() == "my notes\n"
    code, _, err = cli([*argv, "--overwrite"])
    assert code == 0, err
    assert json.loads(output.read_text())["mean"]["WT"]["dice"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------- interrupted writes

def interrupt_before(monkeypatch, final: Path) -> None:
    """Make the rename onto ``final`` raise KeyboardInterrupt, as a Ctrl-C between a case's two renames."""
    real = os.replace

    def replace(source, target, *args, **kwargs):
        if Path(target) == final:
            raise KeyboardInterrupt
        return real(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def test_an_interrupted_pair_of_outputs_is_finished_on_the_next_run(tmp_path, models, case_files, cli, monkeypatch):
    labels, probabilities = tmp_path / "labels.nii.gz", tmp_path / "probabilities.nii.gz"
    argv = segment_argv(models, case_files, labels, "--probabilities", str(probabilities))
    before = hashes(case_files["flair"].parent)
    with monkeypatch.context() as patch:
        interrupt_before(patch, probabilities)
        code, _, err = cli(argv)
    assert code == 130 and err == ["bratsunet interrupted."]
    assert labels.exists() and not probabilities.exists()  # the state a Ctrl-C between the renames leaves
    assert len(list(tmp_path.glob(f"{JOURNAL_PREFIX}*"))) == 1

    code, out, err = cli(argv)  # the same command again
    assert "Finished writing" in out and "labels.nii.gz" in out
    assert code == 2 and "exists; pass --overwrite" in one_error_line(err, "segment")
    assert nib.load(probabilities).shape == (32, 32, 32, 3) and nib.load(labels).shape == (32, 32, 32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.nii.gz", "probabilities.nii.gz"]  # no journal
    assert hashes(case_files["flair"].parent) == before


def test_an_interrupted_pair_that_cannot_be_finished_is_rolled_back(tmp_path, models, case_files, cli,
                                                                    monkeypatch):
    labels, probabilities = tmp_path / "labels.nii.gz", tmp_path / "probabilities.nii.gz"
    argv = segment_argv(models, case_files, labels, "--probabilities", str(probabilities))
    with monkeypatch.context() as patch:
        interrupt_before(patch, probabilities)
        assert cli(argv)[0] == 130
    for temporary in tmp_path.glob(".probabilities-*"):  # the partner's temporary file, deleted by hand
        temporary.unlink()
    code, out, err = cli(argv)
    assert "Removed the incomplete outputs" in out
    assert code == 0, err  # nothing was left to replace: the command ran and wrote both
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.nii.gz", "probabilities.nii.gz"]


# ------------------------------------------------------------------------------------------ training lock

@pytest.fixture
def training(tmp_path, case_files):
    """``(argv, work folder)`` of a one-epoch tiny training."""
    config = json.loads(json.dumps(TINY_CONFIG))
    config["training_filenames"] = [{"image": [str(case_files[m]) for m in MODALITIES],
                                     "label": str(case_files["seg"])}]
    (tmp_path / "tiny.json").write_text(json.dumps(config))
    argv = ["train", "--config_filename", str(tmp_path / "tiny.json"), "--nthreads", "0", "--ngpus", "0",
            "--seed", "3"]
    return argv, tmp_path / "tiny"


def test_a_second_training_into_a_locked_folder_refuses(training, cli):
    argv, work = training
    work.mkdir()
    lock = RunLock(work)
    lock.acquire()  # this process is the live training that holds the folder
    try:
        code, _, err = cli(argv)
        line = one_error_line(err, "train")
        assert code == 2 and f"pid {os.getpid()} on {socket.gethostname()}" in line and "in use" in line
        assert sorted(p.name for p in work.iterdir()) == [LOCK_FILENAME]  # nothing of the second run
    finally:
        lock.release()
    assert not (work / LOCK_FILENAME).exists()
    code, _, err = cli(argv)  # free again
    assert code == 0, err
    assert not (work / LOCK_FILENAME).exists()  # removed at the end of the run


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("holder", ["dead process", "reused pid"])
def test_a_stale_lock_is_taken_over_with_a_message(training, cli, holder):
    argv, work = training
    work.mkdir()
    # A reused pid: this (live) process's pid, recorded with another start time than this process's.
    pid, start = (dead_pid(), None) if holder == "dead process" else (os.getpid(), process_start_time(os.getpid()))
    if holder == "reused pid":
        if start is None:
            pytest.skip("process start times are unknown on this system")
        start -= 1
    (work / LOCK_FILENAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "start": start}))
    code, _, err = cli(argv)
    assert code == 0, err
    assert any(f"Took over the lock of '{work}'" in line and f"pid {pid}" in line for line in err), err
    assert not (work / LOCK_FILENAME).exists()


def test_the_lock_is_removed_when_a_training_fails(training, cli):
    argv, work = training
    assert cli(argv)[0] == 0
    config = json.loads(Path(argv[2]).read_text())
    config["training"]["n_epochs"] = 3
    Path(argv[2]).write_text(json.dumps(config))
    assert cli(argv)[0] == 0
    (work / "model.pth").unlink()  # the log now records epochs no checkpoint holds: the run fails after locking
    code, _, err = cli(argv)
    assert code == 2 and "model.pth" in one_error_line(err, "train")
    assert not (work / LOCK_FILENAME).exists()


def test_the_training_log_is_never_one_of_the_trainings_inputs(training, cli, case_files):
    """``--training_log_filename`` can name any file; the run appends to it, so an input is refused (the command
    line may already refuse it as "not a training log"; the library refuses it as an input, for any caller)."""
    from BratsUNetLib.errors import BratsUNetError
    from BratsUNetLib.training.loop import train
    from BratsUNetLib.training.settings import TrainingSettings

    argv, work = training
    config = Path(argv[2])
    before = hashes(config.parent, case_files["flair"].parent)
    for target, flag in ((config, "--config_filename"), (case_files["seg"], "training_filenames")):
        code, _, err = cli([*argv, "--training_log_filename", str(target)])
        line = one_error_line(err, "train")
        assert code == 2 and str(target) in line and "same file as the input" in line and flag in line
        with pytest.raises(BratsUNetError, match=f"same file as the input .*{flag}"):
            train(config, work, settings=TrainingSettings(device="cpu", log_filename=target))
    assert hashes(config.parent, case_files["flair"].parent) == before
    assert not (work / LOCK_FILENAME).exists()


def test_train_into_an_output_dir_that_is_a_file_is_one_line(training, cli, tmp_path):
    argv, _ = training
    (tmp_path / "taken").write_text("mine")
    code, _, err = cli([*argv, "--output_dir", str(tmp_path / "taken")])
    assert code == 2 and "is a file, not a folder" in one_error_line(err, "train")
    assert (tmp_path / "taken").read_text() == "mine"
