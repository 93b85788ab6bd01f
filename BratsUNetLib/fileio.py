"""Atomic file writing: a file appears complete under its final name or not at all."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
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
        raise BratsUNetError(f"Cannot create the folder '{path.parent}' for the output ({exc.strerror}); choose "
                             "another output location.") from None
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
    try:
        tmp = _new_temporary_file(path)
    except OSError as exc:  # e.g. a folder that refuses new files even where os.access says it is writable
        raise BratsUNetError(f"Cannot create files in the folder '{path.parent}' ({exc.strerror or exc}); choose "
                             "another output location.") from None
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BratsUNetError(f"Could not write '{path}': {exc.strerror or exc}. Check free disk space and permissions.") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# The names _new_temporary_file gives: "." + the final name up to its first dot + "-" + 8 hex digits + suffixes.
_TEMPORARY_NAME = re.compile(r"\.[^.]*-[0-9a-f]{8}\..+")


def _new_temporary_file(path: Path) -> Path:
    """Create an empty file ``.<name>-<random><suffixes>`` beside ``path`` and return its path.

    Created with the permissions of any new file (0666 less the umask), which the final file keeps; files from
    ``tempfile.mkstemp`` are private (0600), so outputs would be unreadable to the user's group.
    """
    suffix = "".join(path.suffixes) or ".tmp"
    while True:
        tmp = path.parent / f".{path.name.split('.')[0]}-{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:  # a name already taken (by chance): draw another
            continue
        return tmp


def remove_interrupted_writes(folder: str | os.PathLike) -> int:
    """Delete the temporary files that atomic writes in ``folder`` left when their process was killed midway
    (a checkpoint's can be hundreds of MB); return how many. Only where no other process writes into ``folder``."""
    removed = 0
    for path in Path(folder).glob(".*"):
        if _TEMPORARY_NAME.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
