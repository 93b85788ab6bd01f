"""A disk that fills up while an output is written: one clear line, the previous file intact, no temporary left.

The full disk is simulated where the data is written: files opened for writing in the test's folder (what image
writers, logs and reports use) or torch's save (checkpoints, written by torch's own file writer). The first bytes
reach the file, as in a real write before the disk runs out, then ``OSError(ENOSPC)`` is raised.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import textwrap
from pathlib import Path

import pytest
import torch
from reliability_support import MODALITIES, TINY_CONFIG, leftovers, run_python, visible_lines

OLD_BYTES = b"the previous version of this file"
FIRST_BYTES = 1000  # what reaches a file before the disk is full


class FullDiskFile:
    """A file opened for writing on a disk with :data:`FIRST_BYTES` free: writing more raises ENOSPC."""

    def __init__(self, stream):
        self._stream = stream
        self._written = 0

    def write(self, data) -> int:
        room = FIRST_BYTES - self._written
        if len(data) > room:
            self._stream.write(data[:max(room, 0)])
            self._stream.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._written += len(data)
        return self._stream.write(data)

    def writelines(self, lines) -> None:  # a real file's writelines runs out of space like its write
        for data in lines:
            self.write(data)

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._stream.close()


def fill_the_disk_of(folder: Path, monkeypatch) -> None:
    """From now on, files opened for writing below ``folder`` run out of space after :data:`FIRST_BYTES`."""
    real_open = builtins.open

    def open_on_full_disk(file, mode="r", *args, **kwargs):
        stream = real_open(file, mode, *args, **kwargs)
        inside = isinstance(file, (str, os.PathLike)) and Path(file).resolve().is_relative_to(folder.resolve())
        return FullDiskFile(stream) if inside and any(c in mode for c in "wax") else stream

    monkeypatch.setattr(builtins, "open", open_on_full_disk)
    monkeypatch.setattr(io, "open", open_on_full_disk)  # what pathlib's Path.open and write_text call


def write_to_a_full_disk(obj, path, *args, **kwargs) -> None:
    """In place of a writer ``save(obj, path, ...)``: the first bytes reach the file, then 'No space left on device'."""
    Path(path).write_bytes(b"\x00" * FIRST_BYTES)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _segment_argv(case_files, models, output: Path) -> list[str]:
    argv = ["segment", "--model", str(models["model"]), "--output", str(output), "--device", "cpu", "--overwrite"]
    for name in MODALITIES:
        argv += [f"--{name}", str(case_files[name])]
    return argv


def test_label_map_written_to_a_full_disk(tmp_path, case_files, models, cli, monkeypatch):
    output = tmp_path / "labels.nii.gz"
    output.write_bytes(OLD_BYTES)
    fill_the_disk_of(tmp_path, monkeypatch)

    code, _stdout, errors = cli(_segment_argv(case_files, models, output))

    assert code == 2
    assert errors == [(f"bratsunet segment: error: Could not write '{output}': No space left on device. Check free "
                       "disk space and permissions.")]
    assert output.read_bytes() == OLD_BYTES
    assert leftovers(tmp_path) == []


def test_report_written_to_a_full_disk_in_a_real_process(tmp_path, case_files):
    """``evaluate --output``, with the text writer failing inside a real ``python -m BratsUNetLib`` process."""
    output = tmp_path / "results.json"
    output.write_bytes(OLD_BYTES)
    program = textwrap.dedent(f"""
        import builtins, errno, io, os, sys
        real_open = builtins.open
        class Full:  # a file on a disk with no space left: the first write fails
            def __init__(self, stream): self.stream = stream
            def write(self, data): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            def __getattr__(self, name): return getattr(self.stream, name)
            def __enter__(self): return self
            def __exit__(self, *exc_info): self.stream.close()
        def full_open(file, mode="r", *args, **kwargs):
            stream = real_open(file, mode, *args, **kwargs)
            return Full(stream) if str(file).startswith({str(tmp_path)!r}) and "w" in mode else stream
        builtins.open = io.open = full_open
        from BratsUNetLib.cli.main import main
        sys.exit(main(["evaluate", "--prediction", {str(case_files["seg"])!r}, "--reference",
                       {str(case_files["seg"])!r}, "--output", {str(output)!r}, "--overwrite"]))
    """)
    result = run_python(["-c", program], timeout=120)
    stderr = result.stderr
    assert result.returncode == 2, stderr
    assert "Traceback" not in stderr
    # The finished progress bar of the evaluation stays on screen; the error is the one line after it.
    lines = visible_lines(stderr)
    assert lines[-1] == (f"bratsunet evaluate: error: Could not write '{output}': No space left on device. Check "
                         "free disk space and permissions.")
    assert all("100%" in line for line in lines[:-1]), lines
    assert output.read_bytes() == OLD_BYTES
    assert leftovers(tmp_path) == []


def test_checkpoint_written_to_a_full_disk_keeps_the_previous_one(tmp_path, models, monkeypatch):
    from BratsUNetLib.models.checkpoint import load_checkpoint, save_checkpoint
    from BratsUNetLib.config.loading import load_config
    from BratsUNetLib.errors import BratsUNetError
    from BratsUNetLib.models.networks import build_network

    target = tmp_path / "model.pth"
    target.write_bytes(models["model"].read_bytes())
    monkeypatch.setattr(torch, "save", write_to_a_full_disk)
    network = build_network(load_config(TINY_CONFIG)["model"])
    with pytest.raises(BratsUNetError, match="No space left on device"):
        save_checkpoint(target, network, config=load_config(TINY_CONFIG), channels=list(MODALITIES))
    assert target.read_bytes() == models["model"].read_bytes()
    assert load_checkpoint(target)["format"] == "bratsunet"
    assert leftovers(tmp_path) == []


def test_training_that_runs_out_of_disk_resumes_once_there_is_space(tmp_path, case_files, cli, monkeypatch):
    """Epoch 1 is saved; the checkpoint of epoch 2 hits a full disk; the next run redoes epoch 2 and finishes."""
    from BratsUNetLib.models.checkpoint import load_checkpoint
    from BratsUNetLib.training.log import TrainingLog

    config = json.loads(json.dumps(TINY_CONFIG))
    config["training"]["n_epochs"] = 3
    config["training_filenames"] = [{"image": [str(case_files[m]) for m in MODALITIES],
                                     "label": str(case_files["seg"])}]
    config_path = tmp_path / "tiny.json"
    config_path.write_text(json.dumps(config))
    argv = ["train", "--config_filename", str(config_path), "--nthreads", "0", "--ngpus", "0", "--seed", "1"]
    work = tmp_path / "tiny"

    real_save = torch.save

    def full_from_the_second_epoch(obj, path, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == 2:
            return write_to_a_full_disk(obj, path)
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_from_the_second_epoch)
    code, _stdout, errors = cli(argv)
    assert code == 2
    assert len(errors) == 1 and "No space left on device" in errors[0] and "model.pth" in errors[0], errors
    assert load_checkpoint(work / "model.pth")["epoch"] == 1
    assert leftovers(work) == []

    monkeypatch.setattr(torch, "save", real_save)
    code, _stdout, errors = cli(argv)
    assert (code, errors) == (0, [])
    log = TrainingLog.read(work / "training_log.csv", ["WT", "TC", "ET"])
    assert [row["epoch"] for row in log.rows] == [1, 2, 3]
    assert load_checkpoint(work / "model.pth")["epoch"] == 3
