"""Input files must be regular files, checked before they are opened.

Opening a named pipe (FIFO) blocks until another process writes to it, and reading a character device such as
``/dev/zero`` never ends (or fills the memory); a folder given where a file is expected fails with an
``IsADirectoryError`` deep inside a reader. ``os.stat`` answers without opening anything, so every reader of
user files (images, checkpoints, configs, training logs) calls :func:`require_regular_file` first.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from BratsUNetLib.errors import BratsUNetError

# What to call the kinds of file that are not regular files, by their stat test.
_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def special_file_kind(mode: int) -> str | None:
    """``"a named pipe (FIFO)"``, ``"a character device"``, ... for a ``st_mode`` that is neither a regular file
    nor a folder; ``"a folder"`` for a folder; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    return next((name for test, name in _SPECIAL_KINDS if test(mode)), "not a regular file")


def require_regular_file(path: str | os.PathLike, label: str, fix: str,
                         error: type[BratsUNetError] = BratsUNetError) -> Path:
    """Return ``path`` as a Path when it names an existing regular file (symbolic links followed).

    Otherwise raise ``error`` with one line: ``"<label> '<path>' does not exist; check the path."``, or
    ``"<label> '<path>' is a folder|a named pipe (FIFO)|a character device..., not a file; <fix>."``.
    ``label`` says what the file is (``"Image file"``, ``"Checkpoint"``), ``fix`` what to give instead.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise error(f"{label} '{path}' does not exist; check the path.") from None
    except NotADirectoryError:
        raise error(f"{label} '{path}' does not exist (a part of the path is a file, not a folder); "
                    f"check the path.") from None
    except OSError as exc:
        raise error(f"Cannot read {label.lower()} '{path}' ({exc.strerror or exc}); check the path and its "
                    f"permissions.") from None
    kind = special_file_kind(mode)
    if kind is not None:
        raise error(f"{label} '{path}' is {kind}, not a regular file; {fix}.")
    return path
