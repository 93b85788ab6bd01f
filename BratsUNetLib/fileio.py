"""Safe file writing: a file appears complete under its final name or not at all, several files appear together
or not at all, and no output is ever one of the command's inputs.

- :func:`atomic_path` / :func:`write_text_atomic`: one file, through a temporary name and a rename.
- :func:`atomic_paths`: several files (a case's label map and probability map) through temporary names and a
  journal, so that a process killed between the renames is finished on the next run
  (:func:`finish_interrupted_writes`).
- :func:`check_not_inputs`: the one check every command runs on its outputs against its inputs.
- :func:`check_output_path`, :func:`check_output_folder`: where an output can go, as one line when it cannot.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from BratsUNetLib.errors import BratsUNetError


def check_output_path(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path after checking that a file can be written there (parent made if needed)."""
    path = Path(path)
    try:
        _check_name_lengths(path)
        if path.is_dir():
            raise BratsUNetError(f"Output '{path}' is a directory; give a file name such as "
                                 f"'{path / 'output.nii.gz'}'.")
        if path.parent.exists() and not path.parent.is_dir():
            raise BratsUNetError(f"Cannot write '{path}': '{path.parent}' is a file, not a folder; choose another "
                                 "output location.")
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise BratsUNetError(f"The output path '{str(path)[:60]}...' has a name longer than this file system "
                                 "allows; choose a shorter name.") from None
        raise BratsUNetError(f"Cannot create the folder '{path.parent}' for the output ({exc.strerror or exc}); "
                             "choose another output location.") from None
    if not os.access(path.parent, os.W_OK):
        raise BratsUNetError(f"The folder '{path.parent}' is not writable; choose another output location.")
    return path


def check_output_folder(folder: str | os.PathLike, flag: str) -> Path:
    """Return ``folder`` as a Path after checking it is a folder or can be made one (made here); one line if not."""
    folder = Path(folder)
    what = flag[:1].upper() + flag[1:]  # at the start of a sentence
    try:
        _check_name_lengths(folder)
        if folder.exists() and not folder.is_dir():
            raise BratsUNetError(f"{what} '{folder}' is a file, not a folder; give a folder (it is made if needed).")
        blocking = next((parent for parent in folder.parents if os.path.exists(parent) and not os.path.isdir(parent)),
                        None)
        if blocking is not None:
            raise BratsUNetError(f"Cannot make {flag} '{folder}': '{blocking}' is a file, not a folder; choose "
                                 "another location.")
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise BratsUNetError(f"{what} '{str(folder)[:60]}...' has a name longer than this file system allows; "
                                 "choose a shorter name.") from None
        raise BratsUNetError(f"Cannot create {flag} '{folder}' ({exc.strerror or exc}); choose another "
                             "location.") from None
    if not os.access(folder, os.W_OK):
        raise BratsUNetError(f"{what} '{folder}' is not writable; choose another location.")
    return folder


def _check_name_lengths(path: Path) -> None:
    """A name longer than the file system allows (ENAMETOOLONG) as one line, before anything is made.

    Checked against the limits of the nearest existing folder, with the room temporary names need: the temporary
    name of a file is 10 characters longer (:func:`_new_temporary_file`), and writers that write a temporary
    file through :func:`atomic_path` again add as many.
    """
    existing = path.absolute()
    while not os.path.exists(existing) and existing != existing.parent:  # os.path: False, not ENAMETOOLONG
        existing = existing.parent
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
        path_max = os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):  # not known here (e.g. Windows): the OS error says it later
        return
    allowed = name_max - _TEMPORARY_ROOM
    too_long = next((part for part in path.parts if len(os.fsencode(part)) > allowed), None)
    if too_long is not None:
        raise BratsUNetError(f"The name '{too_long[:40]}...' is {len(too_long)} characters long; this file system "
                             f"allows {name_max} and temporary names need {_TEMPORARY_ROOM} more: choose a name of "
                             f"at most {allowed} characters.")
    if len(os.fsencode(str(path.absolute()))) > path_max - _TEMPORARY_ROOM:
        raise BratsUNetError(f"The output path '{str(path)[:60]}...' is longer than this file system allows "
                             f"({path_max - _TEMPORARY_ROOM} characters with room for temporary names); choose a "
                             "shorter path.")


_TEMPORARY_ROOM = 20


def check_not_inputs(outputs: Mapping[str, str | os.PathLike | None] | Iterable[tuple[str, str | os.PathLike | None]],
                     inputs: Mapping[str, str | os.PathLike | None] | Iterable[tuple[str, str | os.PathLike | None]]
                     ) -> None:
    """Refuse an output that is one of the inputs, whatever ``--overwrite`` says: one line naming both.

    ``outputs`` and ``inputs`` map what each path is (``"--output"``, ``"--flair"``, ``"case 'x' image"``) to the
    path (or are such pairs; None paths are left out). Two paths are the same file when they resolve to the same
    path (symbolic links and ``..`` followed) or, both existing, are the same inode (hard links, bind mounts: the
    test of :func:`os.path.samefile`). Linear in the number of paths: a config can list thousands of images.
    """
    by_path: dict[Path, tuple[str, Path]] = {}
    by_inode: dict[tuple[int, int], tuple[str, Path]] = {}
    for label, path in _pairs(inputs):
        path = Path(path)
        by_path.setdefault(_resolved(path), (label, path))
        inode = _inode(path)
        if inode is not None:
            by_inode.setdefault(inode, (label, path))
    for out_label, out_path in _pairs(outputs):
        out_path = Path(out_path)
        inode = _inode(out_path)
        found = by_path.get(_resolved(out_path)) or (by_inode.get(inode) if inode is not None else None)
        if found is not None:
            in_label, in_path = found
            raise BratsUNetError(f"{out_label} '{out_path}' is the same file as the input {in_label} '{in_path}'; "
                                 "an input is never written over, not even with --overwrite: choose another output "
                                 "name or folder.")


def same_file(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    """Whether two paths name one file, by the rules of :func:`check_not_inputs`."""
    first, second = Path(first), Path(second)
    inode = _inode(first)
    return _resolved(first) == _resolved(second) or (inode is not None and inode == _inode(second))


def _pairs(paths) -> Iterator[tuple[str, str | os.PathLike]]:
    items = paths.items() if isinstance(paths, Mapping) else paths
    return ((label, path) for label, path in items if path is not None)


def _resolved(path: Path) -> Path:
    try:
        return path.expanduser().resolve()
    except (OSError, RuntimeError):  # a loop of links: compare the path as given
        return path.absolute()


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except (OSError, ValueError):  # it does not exist (yet): only its resolved path can match
        return None
    return status.st_dev, status.st_ino


def describe_paths(paths: Sequence[object], limit: int = 3) -> str:
    """``'a', 'b', 'c' and 7 more``: a list that fits in one line."""
    shown = ", ".join(f"'{path}'" for path in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


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


# A journal of a group write: "." + ``JOURNAL_PREFIX`` + random hex + ``JOURNAL_SUFFIX``; not a name
# _TEMPORARY_NAME matches, so remove_interrupted_writes never deletes one.
JOURNAL_PREFIX = ".bratsunet-writes."
JOURNAL_SUFFIX = ".journal"


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike]) -> Iterator[list[Path]]:
    """Yield one temporary path beside each of ``paths``; on success all are renamed onto ``paths`` together.

    The files appear together or not at all: an error while they are written removes every temporary file;
    before the renames a journal listing the (temporary, final) pairs is written beside the first path and
    removed after them, so a process killed between two renames leaves a journal that
    :func:`finish_interrupted_writes` completes on the next run.
    """
    finals = [check_output_path(path) for path in paths]
    temporaries: list[Path] = []
    try:
        for final in finals:
            temporaries.append(_new_temporary_file(final))
    except OSError as exc:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)
        raise BratsUNetError(f"Cannot create files in the folder '{finals[len(temporaries)].parent}' "
                             f"({exc.strerror or exc}); choose another output location.") from None
    try:
        yield temporaries
    except OSError as exc:
        _remove(temporaries)
        raise BratsUNetError(f"Could not write {describe_paths(finals)}: {exc.strerror or exc}. Check free disk "
                             "space and permissions.") from None
    except BratsUNetError as exc:
        _remove(temporaries)
        # A writer that writes atomically itself (imageio.write_image) names the temporary path it was given;
        # the user knows the final one.
        message = str(exc)
        for tmp, final in zip(temporaries, finals):
            message = message.replace(str(tmp), str(final))
        raise type(exc)(message) from None
    except BaseException:
        _remove(temporaries)
        raise
    if len(finals) == 1:
        _replace(temporaries[0], finals[0], temporaries)
        return
    journal = finals[0].parent / f"{JOURNAL_PREFIX}{secrets.token_hex(4)}{JOURNAL_SUFFIX}"
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "pairs": [[str(tmp.absolute()), str(final.absolute())] for tmp, final in zip(temporaries, finals)]}
    try:
        with atomic_path(journal) as tmp:
            tmp.write_text(json.dumps(record))
    except BaseException:
        _remove(temporaries)
        raise
    # From here the journal says what to finish: an interruption leaves it for the next run.
    for tmp, final in zip(temporaries, finals):
        _replace(tmp, final, [])
    journal.unlink(missing_ok=True)


def _replace(tmp: Path, final: Path, clean_up: Sequence[Path]) -> None:
    try:
        os.replace(tmp, final)
    except OSError as exc:
        _remove(clean_up)
        raise BratsUNetError(f"Could not write '{final}': {exc.strerror or exc}. Check free disk space and "
                             "permissions.") from None


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def finish_interrupted_writes(folders: Iterable[str | os.PathLike]) -> list[str]:
    """Complete the group writes of :func:`atomic_paths` that a killed process left in ``folders``.

    A journal is written only once every file of its group is complete under its temporary name, so the
    group is finished (the remaining temporary files renamed); where a temporary file has gone (deleted by
    hand) and its final file is missing, the group cannot be finished and is rolled back (its new files
    removed, so that no label map stays without its partner). Journals of a live process on this host are left alone.
    Returns one message per journal handled, for the user.
    """
    messages = []
    seen: set[Path] = set()
    for folder in folders:
        folder = Path(folder)
        if folder in seen or not os.path.isdir(folder):  # os.path: False for a name too long, not an error
            continue
        seen.add(folder)
        for journal in sorted(folder.glob(f"{JOURNAL_PREFIX}*{JOURNAL_SUFFIX}")):
            message = _finish_journal(journal)
            if message:
                messages.append(message)
    return messages


def _finish_journal(journal: Path) -> str | None:
    try:
        record = json.loads(journal.read_text())
        pairs = [(Path(tmp), Path(final)) for tmp, final in record["pairs"]]
        pid, host = int(record.get("pid", 0)), str(record.get("host", ""))
    except (OSError, ValueError, KeyError, TypeError):
        journal.unlink(missing_ok=True)
        return f"Removed the unreadable journal '{journal}' of an interrupted write."
    if host == socket.gethostname() and pid != os.getpid() and process_alive(pid):
        return None  # another process is between its renames right now
    finals = [final for _, final in pairs]
    if all(tmp.exists() or final.exists() for tmp, final in pairs):
        for tmp, final in pairs:
            if tmp.exists():
                os.replace(tmp, final)
        journal.unlink(missing_ok=True)
        return (f"Finished writing {describe_paths(finals)}: the run that wrote them was stopped between two of "
                "its files.")
    # Final files whose temporary file has gone were renamed by that run (new, incomplete as a group); the others
    # still hold what was there before, which stays.
    _remove([tmp for tmp, _ in pairs] + [final for tmp, final in pairs if not tmp.exists()])
    journal.unlink(missing_ok=True)
    return (f"Removed the incomplete outputs {describe_paths(finals)}: the run that wrote them was stopped "
            "between two of its files and they cannot be completed.")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists
        return True
    return True


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
