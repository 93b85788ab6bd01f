"""The worker process that runs the library for Slicer, and the client side of its protocol.

The worker is ``<Slicer's python> -m BratsUNetLib worker``: it reads one job per line on stdin,
``{"job": id, "argv": [a bratsunet command line]}``, and answers with JSON events on stdout, each carrying the
job id and ending with ``{"event": "done", "exit_code": N}`` (see ``BratsUNetLib/cli/worker.py``). It stays
alive between jobs so torch is imported and the model loaded once per session; Cancel kills its whole process
tree and the next job starts a fresh one.

Threads only read the pipes into a queue; every event is handled by :meth:`Job.poll` in the thread that calls it
(a ``qt.QTimer`` of Slicer's event loop, see :func:`follow_in_event_loop`, or the loop of :meth:`Job.wait` in a
script), so scene updates never happen off the main thread.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from BratsUNetLib.errors import BratsUNetError, ExitCode
from BratsUNetSlicer import LIBRARY_PARENT
from BratsUNetSlicer.messages import one_line, panel_words


Event = dict[str, Any]
log = logging.getLogger(__name__)
POLL_MSEC = 100  # how often Slicer's event loop hands a running job the events that arrived


def python_executable() -> str:
    """Slicer's own Python launcher when running inside Slicer, else this interpreter."""
    return shutil.which("PythonSlicer") or sys.executable


def worker_command() -> list[str]:
    return [python_executable(), "-m", "BratsUNetLib", "worker"]


class Job:
    """One command run by the worker: its events, its state and its outcome.

    ``state`` is ``running``, then ``succeeded``, ``failed`` or ``cancelled``. ``error`` is the one-line
    message of a failure; ``result`` merges the payloads of the job's ``result`` events. ``on_event`` sees each
    event in order; ``on_finish`` runs once when the job ends (whatever the state) and may itself fail the job
    by raising (e.g. the result could not be imported), which turns ``succeeded`` into ``failed``.

    For a caller: :meth:`onProgress` and :meth:`onFinished` add callbacks, run by Slicer's event loop inside the
    application (:func:`follow_in_event_loop`) and by :meth:`wait` or :meth:`poll` in a script; :meth:`cancel`.
    """

    def __init__(self, job_id: str, argv: list[str], on_event: Callable[[Event], None] | None,
                 on_finish: Callable[[Job], None] | None, cancel: Callable[[], None]):
        self.id = job_id
        self.argv = argv
        self.on_event = on_event
        self.on_finish = on_finish
        self._cancel = cancel
        self._queue: queue.Queue[Event] = queue.Queue()
        self.events: list[Event] = []
        self.state = "running"
        self.exit_code: int | None = None
        self.error: str | None = None
        self.result: dict[str, Any] = {}
        self._progress_callbacks: list[Callable[[Event], None]] = []
        self._finished_callbacks: list[Callable[[Job], None]] = []
        self._timer: Any = None  # the event loop's timer following this job, kept alive while it runs

    @property
    def finished(self) -> bool:
        return self.state != "running"

    def onProgress(self, callback: Callable[[Event], None]) -> Job:
        """Call ``callback(event)`` with each ``progress`` event (``fraction`` of the whole job from 0 to 1,
        ``seconds_left`` when known, ``task``, ``done`` and ``total``); returns the job, for chaining."""
        self._progress_callbacks.append(callback)
        return self

    def onFinished(self, callback: Callable[[Job], None]) -> Job:
        """Call ``callback(job)`` once when the job has ended (``state``, ``error`` and ``result`` set, its nodes
        in the scene); at once if it has ended already. Returns the job."""
        if self.finished:
            callback(self)
        else:
            self._finished_callbacks.append(callback)
        return self

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Handle the events that arrived; wait up to ``timeout`` s (None: forever) for the first. True when over."""
        while not self.finished:
            try:
                event = self._queue.get(timeout=timeout) if timeout != 0.0 else self._queue.get_nowait()
            except queue.Empty:
                break
            timeout = 0.0
            self._handle(event)
        return self.finished

    def wait(self, timeout: float | None = None) -> Job:
        """Block until the job ends (or ``timeout`` seconds pass), handling its events; return the job."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.finished:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            self.poll(timeout=0.5 if remaining is None else min(0.5, remaining))
        return self

    def cancel(self) -> None:
        """Stop the job now: the worker's process tree is killed and events not yet handled are dropped."""
        if not self.finished:
            self._cancel()
            self._finish("cancelled", ExitCode.CANCELLED, None)

    def _handle(self, event: Event) -> None:
        kind = event.get("event")
        if kind == "exited":  # the process ended without finishing the job
            self._finish("failed", event.get("returncode"), event["message"])
            return
        self.events.append(event)
        if kind == "result":
            self.result.update({k: v for k, v in event.items() if k not in ("event", "job")})
        elif kind == "error" and self.error is None:
            self.error = panel_words(str(event.get("message") or "unknown error"))  # the panel's words, not flags
        if self.on_event is not None:
            self.on_event(event)
        if kind == "progress":
            for callback in self._progress_callbacks:
                callback(event)
        if kind == "done":
            code = int(event.get("exit_code", 1))
            if code == ExitCode.SUCCESS:
                self._finish("succeeded", code, None)
            elif code == ExitCode.CANCELLED:
                self._finish("cancelled", code, self.error)
            else:
                self._finish("failed", code, self.error or f"the job ended with exit status {code}")

    def _finish(self, state: str, exit_code: int | None, error: str | None) -> None:
        self.state, self.exit_code, self.error = state, exit_code, error
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self.on_finish is not None:
            try:
                self.on_finish(self)
            except Exception as exc:  # whatever goes wrong with the result must reach the caller as a message
                if not isinstance(exc, BratsUNetError):  # a bug rather than a user error: keep the traceback
                    log.exception("BratsUNet: handling the result of job %s failed", self.id)
                self.state, self.error = "failed", one_line(str(exc)) or type(exc).__name__
        callbacks, self._finished_callbacks = self._finished_callbacks, []
        for callback in callbacks:
            callback(self)


def follow_in_event_loop(job: Job, timer: Any) -> None:
    """Let ``timer`` (a ``qt.QTimer``, or anything with its ``setInterval``, ``connect``, ``start`` and ``stop``)
    poll ``job`` every :data:`POLL_MSEC` until it ends, so that its callbacks run in the application's event loop
    without anyone calling :meth:`Job.wait`. The job keeps the timer alive and stops it when it ends."""
    job._timer = timer
    timer.setInterval(POLL_MSEC)
    timer.connect("timeout()", job.poll)
    timer.start()


class WorkerClient:
    """Starts the worker on first use, sends it jobs one at a time and kills it on Cancel.

    ``command`` replaces the worker's command line (tests use a stand-in program that speaks the protocol).
    """

    def __init__(self, command: list[str] | None = None):
        self.command = command or worker_command()
        self._process: subprocess.Popen | None = None
        self._job: Job | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._ids = itertools.count(1)

    @property
    def busy(self) -> bool:
        return self._job is not None and not self._job.finished

    @property
    def process_id(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def submit(self, argv: list[str], on_event: Callable[[Event], None] | None = None,
               on_finish: Callable[[Job], None] | None = None) -> Job:
        """Send ``argv`` (a ``bratsunet`` command line without the program name) as a new job."""
        if self.busy:
            raise BratsUNetError("BratsUNet is already running a job; wait for it to finish or cancel it.")
        job = Job(f"{os.getpid()}-{next(self._ids)}", [str(a) for a in argv], on_event, on_finish, self._kill)
        self._job = job
        line = json.dumps({"job": job.id, "argv": job.argv}) + "\n"
        try:
            for attempt in range(2):  # a worker that died since the last job is restarted once
                process = self._ensure_process()
                try:
                    process.stdin.write(line)
                    process.stdin.flush()
                    break
                except OSError:
                    self._kill()
                    if attempt:
                        raise
        except OSError as exc:  # the worker cannot be started (e.g. Python missing) or dies at once
            self._job = None
            raise BratsUNetError(f"The BratsUNet worker could not be started ({exc.strerror or exc}); check the "
                                 "installation of the extension and the application log.") from None
        return job

    def close(self) -> None:
        """End the worker (at scene close or module unload); a running job is cancelled."""
        if self._job is not None and not self._job.finished:
            self._job.cancel()
        else:
            self._kill()

    def _ensure_process(self) -> subprocess.Popen:
        if self._process is not None and self._process.poll() is None:
            return self._process
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(LIBRARY_PARENT), env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"
        options: dict[str, Any] = {}
        if os.name == "nt":
            options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        else:
            options["start_new_session"] = True  # its own process group, so Cancel can end the whole tree
        self._stderr_tail.clear()
        process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                                   bufsize=1, env=env, **options)
        stderr_reader = threading.Thread(target=self._read_stderr, args=(process,), daemon=True)
        stderr_reader.start()
        threading.Thread(target=self._read_events, args=(process, stderr_reader), daemon=True).start()
        self._process = process
        return process

    def _read_events(self, process: subprocess.Popen, stderr_reader: threading.Thread) -> None:
        for line in process.stdout:
            job = self._job
            if job is None or not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:  # a library printed to stdout directly: keep it as a log line
                event = {"event": "message", "text": line.rstrip(), "job": job.id}
            if isinstance(event, dict) and event.get("job") == job.id:
                job._queue.put(event)
        returncode = process.wait()
        # The last lines on stderr explain the exit: wait until the reader has them all (end of the pipe). The
        # timeout only covers a grandchild that keeps the pipe open after the worker died.
        stderr_reader.join(timeout=10)
        job = self._job
        if job is not None and self._process is process:
            tail = " ".join(list(self._stderr_tail)[-3:])
            job._queue.put({"event": "exited", "returncode": returncode,
                            "message": f"The BratsUNet worker stopped unexpectedly (exit status {returncode})"
                                       + (f": {tail}" if tail else "; see the application log.")})

    def _read_stderr(self, process: subprocess.Popen) -> None:
        for line in process.stderr:
            text = line.rstrip()
            if text:
                self._stderr_tail.append(text)
                log.info("BratsUNet worker: %s", text)

    def _kill(self) -> None:
        """Kill the worker and every process it started; the next job starts a new worker."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        if os.name == "nt":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False)
        else:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.warning("BratsUNet worker %s did not end after being killed", process.pid)


# The workers of this Slicer process by purpose and command line: every BratsUNetLogic shares them, so that the
# panel, the console and a script see one another's jobs and torch is loaded once per purpose.
_shared: dict[tuple[str, tuple[str, ...]], WorkerClient] = {}


def shared_worker(purpose: str, command: list[str] | None = None) -> WorkerClient:
    """The worker for ``purpose`` ("segment" or "train": one of each, so a segmentation runs beside a training)."""
    key = (purpose, tuple(command or worker_command()))
    if key not in _shared:
        _shared[key] = WorkerClient(command)
    return _shared[key]


def close_shared_workers() -> None:
    """End every shared worker (module unload; tests between cases)."""
    for client in _shared.values():
        client.close()

