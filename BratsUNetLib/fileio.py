"""Atomic file writing: a file appears complete under its final name or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from BratsUNetLib.errors import BratsUNetError


def check_output_path(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path after checking that a file can be written there (parent made if needed)."""
    path = Path(path)
    if path.is_dir():
        raise BratsUNetError(f"Output '{path}' is a directory; give a file name such as '{path / 'output.nii.gz'}'.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BratsUNetError(f"Cannot create the folder '{path.parent}' for the output: {exc.strerror}.") from None
    if not os.access(path.parent, os.W_OK):
        raise BratsUNetError(f"The folder '{path.parent}' is not writable; choose another output location.")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on failure removed.

    The temporary name keeps the final suffixes (``.nii.gz``, ``.pth``) so writers that choose a format by
    extension behave the same.
    """
    path = check_output_path(path)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}-", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BratsUNetError(f"Could not write '{path}': {exc.strerror or exc}. Check free disk space and permissions.") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
