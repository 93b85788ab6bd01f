"""Model downloads into the per-user models folder: verified before first use, resumable, cancellable.

pooch does the verification and the placing of the file (:func:`pooch.retrieve`: into a temporary file, hash
checked, then moved to its name; on a mismatch the temporary file is removed). Its own HTTP downloader starts
every transfer from byte 0 and reports to a tqdm bar only, so the transfer itself is :class:`ResumingDownloader`,
pooch's downloader interface: the bytes go to ``<file>.part`` (kept when the transfer stops), the next attempt
continues it with an HTTP Range request, progress goes to a :class:`~BratsUNetLib.events.ProgressReporter`
(percent and time left on the command line, events in Slicer) and a :class:`~BratsUNetLib.cancel.CancelToken`
stops it between two chunks. Two processes asking for the same file take turns (a file lock): the second waits,
saying so, and then uses the first one's file.

Hashes: a catalogue entry's sha256 is checked. Where a publisher gives only an md5 (or nothing), that is checked
and the file's sha256 recorded beside it at the first download (``<file>.sha256``): a later download of the same
file (after it was deleted, say) must have that sha256, so a file changed on the server is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import platformdirs

from BratsUNetLib.cancel import CancelToken
from BratsUNetLib.errors import BratsUNetError, Cancelled
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.fileio import write_text_atomic

MODELS_DIR_ENV = "BRATSUNET_MODELS_DIR"
CHECKPOINT_SUFFIX = ".pth"  # every model in the models folder is a BratsUNet checkpoint <name>.pth
PART_SUFFIX = ".part"
RECORD_SUFFIX = ".sha256"
#: Where ``<file>.lock`` is held by the process downloading it, inside the folder of the downloads. The lock files
#: stay (empty): removing one while another process waits on it would let a third take a new one beside it.
LOCKS_FOLDER = ".locks"
#: Seconds between two looks at the cancel token while another process downloads the same file.
LOCK_POLL_S = 0.5
#: Bytes per read of a transfer: each read may report progress and be cancelled.
CHUNK_BYTES = 1 << 20
#: Seconds without a byte before a transfer counts as failed (a hang guard, not a deadline).
TIMEOUT_S = 60


def models_dir() -> Path:
    """The models folder: ``$BRATSUNET_MODELS_DIR``, else the user's cache folder + ``bratsunet/models``."""
    if os.environ.get(MODELS_DIR_ENV):
        return Path(os.environ[MODELS_DIR_ENV]).expanduser()
    return platformdirs.user_cache_path("bratsunet") / "models"


def checkpoint_path(name: str, folder: Path | None = None) -> Path:
    """Where the model called ``name`` is kept in the models folder (whether or not it is there)."""
    return (folder or models_dir()) / f"{name}{CHECKPOINT_SUFFIX}"


def sha256_of(path: str | os.PathLike) -> str:
    """The sha256 of a file, hex."""
    return _digest_of(path, "sha256")


def _digest_of(path: str | os.PathLike, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_path(filename: str, folder: Path | None = None) -> Path | None:
    """``<folder>/<filename>`` (default folder :func:`models_dir`) when a download placed it there, else None.

    Only looked up: :func:`download` checks the file against its sha256.
    """
    path = Path(folder or models_dir()) / filename
    return path if path.is_file() else None


def _record(path: Path) -> Path:
    """Where the sha256 of ``path`` is recorded at its first download (``<file>.sha256``)."""
    return path.with_name(path.name + RECORD_SUFFIX)


def recorded_sha256(path: Path) -> str | None:
    """The sha256 recorded at the first download of ``path``, or None."""
    record = _record(path)
    try:
        text = record.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else None


def download(url: str, filename: str, *, sha256: str | None = None, md5: str | None = None,
             folder: Path | None = None, reporter: ProgressReporter | None = None,
             cancel: CancelToken | None = None, title: str | None = None) -> Path:
    """``<folder>/<filename>`` (default folder :func:`models_dir`), downloaded from ``url`` when not there.

    The file gets its name only once its hash matched (``sha256``, else a sha256 recorded earlier, else ``md5``);
    a file already there is checked against its recorded sha256. Raises :class:`Cancelled` when ``cancel`` is set
    (the part downloaded is kept for the next attempt), BratsUNetError with one line for a failed transfer or a
    wrong hash (then nothing of the download is kept).
    """
    folder = Path(folder or models_dir())
    target = folder / filename
    title = title or filename
    if target.is_file():
        return _checked_in_place(target, sha256, md5)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BratsUNetError(f"Cannot make the models folder '{folder}' ({exc.strerror or exc}); set "
                             f"{MODELS_DIR_ENV} to a folder you can write to.") from None
    # One transfer per file at a time: two processes (two Slicer Applies, a command line beside the panel) would
    # append to the same part. An OS file lock is released when its process dies, so none is ever left stale.
    with _download_lock(target, reporter, cancel, title):
        if target.is_file():  # the other process finished it while this one waited
            return _checked_in_place(target, sha256, md5)
        return _transfer(url, target, sha256, md5, reporter, cancel, title)


def _checked_in_place(target: Path, sha256: str | None, md5: str | None) -> Path:
    """``target``, a file already in the models folder, once it is known to be the one that was downloaded."""
    expected = sha256 or recorded_sha256(target)
    if expected is None and md5:
        # Placed, but its sha256 not recorded yet (the process ended between the two): check the md5 once more.
        if _digest_of(target, "md5") == md5:
            write_text_atomic(_record(target), sha256_of(target) + "\n")
            return target
    elif expected is None or sha256_of(target) == expected:
        return target
    raise BratsUNetError(f"'{target}' is not the file that was downloaded (its hash differs); delete it and "
                         "download it again.")


@contextlib.contextmanager
def _download_lock(target: Path, reporter: ProgressReporter | None, cancel: CancelToken | None,
                   title: str) -> Iterator[None]:
    """Hold ``<folder>/.locks/<file>.lock`` (filelock: fcntl or msvcrt, whichever the system has) for the block;
    while another process holds it, say so once and wait, cancellably."""
    import filelock  # on use, as pooch below (it comes with torch)

    locks = target.parent / LOCKS_FOLDER
    locks.mkdir(exist_ok=True)
    lock = filelock.FileLock(str(locks / (target.name + ".lock")))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        if reporter is not None:
            reporter.message(f"Waiting for another download of {title} to finish ...")
        while True:
            if cancel is not None and cancel.cancelled:
                raise Cancelled(f"Stopped waiting for the other download of {title}.") from None
            try:
                lock.acquire(timeout=LOCK_POLL_S)  # the poll interval of the cancel check, not a deadline
                break
            except filelock.Timeout:
                continue
    try:
        yield
    finally:
        lock.release()


def _transfer(url: str, target: Path, sha256: str | None, md5: str | None, reporter: ProgressReporter | None,
              cancel: CancelToken | None, title: str) -> Path:
    """Download ``url`` into ``target`` (which is not there) through pooch, verified; see :func:`download`."""
    folder, filename = target.parent, target.name
    expected = sha256 or recorded_sha256(target)
    # Imported on use: every bratsunet segment imports this module (to resolve model names), and requests and pooch
    # cost 60-90 ms of its start-up; only a download needs them.
    import pooch
    import requests

    # pooch says what it downloads and the hash it found at INFO level, as lines of its own: the reporter speaks.
    pooch.get_logger().setLevel("WARNING")
    known_hash = f"sha256:{expected}" if expected else f"md5:{md5}" if md5 else None
    downloader = ResumingDownloader(target.with_name(filename + PART_SUFFIX), reporter, cancel, title)
    try:
        pooch.retrieve(url, known_hash=known_hash, fname=filename, path=folder, downloader=downloader)
    except ValueError:  # pooch: the hash does not match
        downloader.discard()
        if expected and not sha256:  # the sha256 recorded at the first download (trust on first use)
            raise BratsUNetError(f"The download of {title} from {url} is not the published file: its sha256 differs "
                                 f"from the one recorded at its first download in '{_record(target)}'; nothing was "
                                 "kept: if the publisher changed the file on purpose, delete that record and run the "
                                 "same command again.") from None
        raise BratsUNetError(f"The download of {title} from {url} is not the published file (its "
                             f"{'sha256' if expected else 'md5'} differs from the catalogue's); nothing was kept: try "
                             "again later, or tell the catalogue's maintainer.") from None
    except requests.RequestException as exc:
        downloader.discard_if_unusable()
        raise BratsUNetError(f"The download of {title} from {url} failed ({_reason(exc)}); run the same command "
                             "again to retry.") from None
    except OSError as exc:  # the models folder: full, read-only, gone (the transfer's own errors are above)
        downloader.discard()
        raise BratsUNetError(f"The download of {title} cannot be written to '{folder}' "
                             f"({exc.strerror or type(exc).__name__}); free some space or set {MODELS_DIR_ENV} to "
                             "another folder.") from None
    if not sha256:
        write_text_atomic(_record(target), sha256_of(target) + "\n")
    return target


class ResumingDownloader:
    """A pooch downloader that keeps the bytes of a stopped transfer in ``part`` and continues them next time."""

    def __init__(self, part: Path, reporter: ProgressReporter | None, cancel: CancelToken | None,
                 title: str) -> None:
        self.part, self.title = part, title
        self.reporter = reporter or ProgressReporter("none")
        self.cancel = cancel or CancelToken()
        self.resumable = False  # whether the server continues a transfer (answers Range requests)

    def __call__(self, url: str, output_file: str, _pooch: object, check_only: bool = False) -> bool | None:
        if check_only:
            return True
        import requests  # on use, as in download()

        have = self.part.stat().st_size if self.part.is_file() else 0
        # Byte offsets (Range, Content-Length, the part's size) count the bytes as stored: a compressed transfer
        # would count others, and continuing it would splice the file at the wrong byte.
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
        task = f"download {self.title}"
        with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT_S) as response:
            if response.status_code == 416 and have:  # the part is already whole (or longer than the file)
                self.part.unlink()
                return self(url, output_file, _pooch)
            response.raise_for_status()
            self.resumable = response.status_code == 206 or response.headers.get("Accept-Ranges") == "bytes"
            if response.status_code != 206:
                have = 0  # the server sends the whole file: start over
            length = response.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else 0
            self.reporter.start(task, total)
            with open(self.part, "ab" if have else "wb") as handle:
                done = have
                for chunk in response.iter_content(chunk_size=CHUNK_BYTES):
                    if self.cancel.cancelled:
                        raise Cancelled(f"The download of {self.title} was stopped; run the same command again to "
                                        "resume it.")
                    handle.write(chunk)
                    done += len(chunk)
                    self.reporter.advance(task, done, total)
            if total and done < total:
                raise requests.exceptions.ChunkedEncodingError(f"the transfer ended after {done} of {total} bytes")
        # pooch checks the hash of output_file and moves it onto the final name.
        os.replace(self.part, output_file)
        return None

    def discard(self) -> None:
        """Remove the bytes of this download (a wrong file must not be continued)."""
        self.part.unlink(missing_ok=True)

    def discard_if_unusable(self) -> None:
        """After a failed transfer keep the part only where a server resumes: elsewhere it cannot be continued."""
        if not self.resumable:
            self.discard()


def _reason(exc: Exception) -> str:
    """A failed transfer (a ``requests.RequestException``) in a few words: its HTTP status, else its message."""
    response = getattr(exc, "response", None)
    if response is not None and response.status_code:
        return f"HTTP {response.status_code} {response.reason or ''}".strip()
    return " ".join(str(exc).split())[:120] or type(exc).__name__
