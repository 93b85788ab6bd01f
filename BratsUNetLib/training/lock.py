"""One training folder, one run: a lock file in the work folder while a training runs there.

Two trainings in one folder would mix their checkpoints and their log rows. The lock file
``<work_dir>/.training.lock`` records the holder's pid, host name and process start time; it appears whole
(written under a temporary name, then hard-linked to the lock name, which fails when the name exists), so a
reader never sees half a lock; the temporary names are those that
:func:`BratsUNetLib.fileio.remove_interrupted_writes` deletes, so a run killed while it takes the lock leaves
nothing behind once the next run starts. A second training into the folder refuses with one line that names the
holder.

A lock is stale, and is taken over with a message, when its holder is gone: same host and the pid does not
exist, or it exists but started at another time than the lock records (the pid was reused by another program
after the holder was killed). A run killed with SIGKILL cannot remove its lock; the next run then finds it
stale. A lock from another host (a shared file system) cannot be checked from here: the error says to delete it
if no training runs there.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from pathlib import Path

from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.fileio import process_alive

LOCK_FILENAME = ".training.lock"


def process_start_time(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux ``/proc/<pid>/stat``); None where unknown."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (ValueError, IndexError):
        return None


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first); None where there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: fields are counted after its end.
    return stat[stat.rindex(")") + 2:].split() if ")" in stat else None


def holder_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process: it exists and is not a zombie (killed, not yet reaped by its parent)."""
    if not process_alive(pid):
        return False
    fields = _stat_fields(pid)
    return not (fields and fields[0] in ("Z", "X"))


class RunLock:
    """The lock of one work folder; :meth:`acquire` when the run starts, :meth:`release` when it ends."""

    def __init__(self, work_dir: str | os.PathLike):
        self.path = Path(work_dir) / LOCK_FILENAME
        self.held = False

    def acquire(self, say=print) -> None:
        """Take the lock, taking over a stale one (``say`` gets the message); raise if a live run holds it."""
        record = {"pid": os.getpid(), "host": socket.gethostname(), "start": process_start_time(os.getpid())}
        for _ in range(10):  # each retry follows a stale lock removed, by us or by a process racing us
            if self._create(record):
                self.held = True
                return
            holder = self._read()
            if holder is None:
                continue  # it went away between the two steps
            problem = self._held_by(holder)
            if problem:
                raise BratsUNetError(problem)
            if self._remove_stale(holder):
                say(f"Took over the lock of '{self.path.parent}' left by a training that is no longer running "
                    f"(pid {holder.get('pid')} on {holder.get('host')}).")
        raise BratsUNetError(f"Could not take the lock '{self.path}' (other processes keep changing it); make sure "
                             "only one training uses this folder, then try again.")

    def release(self) -> None:
        """Remove the lock if this process holds it (also after an error or a cancel)."""
        if not self.held:
            return
        self.held = False
        holder = self._read()
        if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            _unlink(self.path)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    # ------------------------------------------------------------------------------------------- details

    def _create(self, record: dict) -> bool:
        """Create the lock holding ``record``; False when a lock exists."""
        tmp = self.path.with_name(f".training-lock-{secrets.token_hex(4)}.tmp")  # see _TEMPORARY_NAME
        try:
            descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(descriptor, json.dumps(record).encode())
            finally:
                os.close(descriptor)
            try:
                os.link(tmp, self.path)  # fails when the lock exists: creating and filling it is one step
                return True
            except FileExistsError:
                return False
            except OSError:  # a file system without hard links: create the lock itself exclusively
                return self._create_without_links(record)
        except FileExistsError:
            return False
        except OSError as exc:
            raise BratsUNetError(f"Cannot create the lock '{self.path}' ({exc.strerror or exc}); check that the "
                                 "output folder is writable.") from None
        finally:
            _unlink(tmp)

    def _create_without_links(self, record: dict) -> bool:
        try:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(descriptor, json.dumps(record).encode())
        finally:
            os.close(descriptor)
        return True

    def _read(self) -> dict | None:
        """The holder's record; None when there is no lock; ``{}`` when it cannot be read as one."""
        try:
            text = self.path.read_text(errors="replace")
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            record = json.loads(text)
        except ValueError:
            return {}
        return record if isinstance(record, dict) else {}

    def _held_by(self, holder: dict) -> str | None:
        """Why the lock cannot be taken (one line), or None when it is stale."""
        pid, host = holder.get("pid"), holder.get("host")
        remove = f"if no training runs there, delete '{self.path}'"
        if not isinstance(pid, int) or not isinstance(host, str):
            return f"'{self.path.parent}' has a lock file '{self.path}' that is not a training lock; {remove}."
        in_use = (f"The folder '{self.path.parent}' is in use by another training (pid {pid} on {host}); wait "
                  "for it to end or choose another output folder")
        if host != socket.gethostname():
            return f"{in_use}; {remove} (a lock from another computer cannot be checked from here)."
        if not holder_alive(pid):
            return None
        recorded, current = holder.get("start"), process_start_time(pid)
        if recorded is not None and current is not None and recorded != current:
            return None  # the pid now belongs to a process started after the holder: the holder is gone
        return f"{in_use}."

    def _remove_stale(self, holder: dict) -> bool:
        """Remove the stale lock ``holder`` unless another process replaced it meanwhile; whether it was removed."""
        # Named as a temporary file of fileio, so a kill before it is deleted leaves nothing that stays.
        aside = self.path.with_name(f".training-lock-{secrets.token_hex(4)}.stale")
        try:
            os.rename(self.path, aside)  # atomic: of two processes taking over, one moves it
        except FileNotFoundError:
            return False
        try:
            moved = json.loads(aside.read_text(errors="replace"))
        except (OSError, ValueError):
            moved = {}
        if moved != holder:
            # A fresh lock taken by a racing process since we read the stale one: put it back.
            try:
                os.link(aside, self.path)
            except OSError:
                pass
            _unlink(aside)
            return False
        _unlink(aside)
        return True


def _unlink(path: Path) -> None:
    """Delete ``path`` if it exists (``os.unlink``: the lock's own files are not the run's file operations that
    the kill-and-resume test counts to aim its kills)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
