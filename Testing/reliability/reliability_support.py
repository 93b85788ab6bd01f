"""Shared pieces of the reliability tests: the tiny model's config, bad-file makers and output checks.

Everything here builds inputs from seeds into a test's own folder; nothing is downloaded or committed.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from tiny_config import tiny_config

from BratsUNetLib.modalities import MODALITIES  # noqa: F401  (the reliability tests import it from here)

ROOT = Path(__file__).resolve().parents[2]
CASE_SHAPE = (32, 32, 32)

TINY_CONFIG = tiny_config(16, test_input=0)
# The kinds of bad input each matrix (command line, Slicer logic) must cover.
BAD_INPUT_KINDS = ("image", "geometry", "model", "label", "config", "checkpoint", "output")
# The command line has two more: training logs (read when a run resumes) and the arguments of demo and phantom,
# which have no counterpart in the Slicer module.
COMMAND_LINE_KINDS = (*BAD_INPUT_KINDS, "log", "argument")


def save_nifti(path: Path, array: np.ndarray, affine: np.ndarray, dtype=np.float32) -> Path:
    """Write ``array`` as NIfTI with nibabel directly: the files here are meant to be broken, so they must not go
    through the library's own (checking) writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array, dtype=dtype), np.asarray(affine, dtype=np.float64)), str(path))
    return path


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(array float32, affine)`` of a NIfTI file as nibabel reads it."""
    image = nib.load(str(path))
    return np.asarray(image.dataobj, dtype=np.float32), image.affine


def truncated_copy(source: Path, target: Path, fraction: float = 0.6) -> Path:
    """The first ``fraction`` of ``source``'s bytes: an interrupted copy or download."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


class CreatesFileWhenUnpickled:
    """Unpickling this object calls ``open(path, "w")``: a checkpoint that would create a file if loaded."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    """A ``.pth`` file (a pickle, as ``torch.save`` would write with the default pickler) that creates ``marker``
    when loaded with plain ``pickle``/``torch.load(weights_only=False)``."""
    path.write_bytes(pickle.dumps({"state_dict": CreatesFileWhenUnpickled(marker)}, protocol=2))
    return path


def leftovers(folder: Path) -> list[Path]:
    """Temporary files of atomic writes (``.<name>-XXXX<suffix>``) left in ``folder`` or below."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob(".*") if p.is_file())


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` by relative path, with its bytes: compare before and after a failure."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def visible_lines(stream_text: str) -> list[str]:
    """The non-blank lines a terminal shows for ``stream_text``: a carriage return (progress bars redraw and
    erase themselves with it) lets the text after it replace the line."""
    lines = []
    for line in stream_text.split("\n"):
        shown = [part for part in line.split("\r") if part.strip()]
        if shown:
            lines.append(shown[-1])
    return lines


def run_python(arguments: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``python ARGUMENTS`` as a separate process, from the repository root, on the CPU; output decoded."""
    environment = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, *arguments], capture_output=True, timeout=timeout, cwd=ROOT,
                            env=environment, check=False)
    # Decoded here rather than with text=True, whose newline translation would turn each \r into a line.
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(errors="replace"),
                                       result.stderr.decode(errors="replace"))


def run_bratsunet(argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m BratsUNetLib ARGV`` as a separate process (see :func:`run_python`)."""
    return run_python(["-m", "BratsUNetLib", *argv], timeout)
