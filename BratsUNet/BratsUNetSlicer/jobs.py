"""How the module starts a job: one command line handed to the worker, as one scene transaction.

Segmenting and training both start here (:func:`start_job`), so every job undoes its scene changes the same way
when it fails or is cancelled, and a job's temporary folder goes however the job ends (or at once, when it does
not start).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import slicer

from BratsUNetSlicer.transaction import SceneTransaction
from BratsUNetSlicer.worker import Job, WorkerClient, follow_in_event_loop


def temporary_folder(purpose: str) -> Path:
    """A new folder under Slicer's temporary path (the system's outside Slicer)."""
    root = getattr(getattr(slicer, "app", None), "temporaryPath", None) or tempfile.gettempdir()
    Path(root).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"BratsUNet-{purpose}-", dir=root))


def event_loop_timer() -> Any:
    """A ``qt.QTimer`` of Slicer's event loop inside the application; None outside it (a script without an
    application runs its jobs with ``job.wait()``)."""
    if getattr(slicer, "app", None) is None:
        return None
    import qt  # only inside the application

    return qt.QTimer()


def start_job(worker: WorkerClient, argv: list[str], transaction: SceneTransaction, *,
           on_event: Callable[[dict], None] | None = None, on_finish: Callable[[Job], None] | None = None,
           folder: Path | None = None) -> Job:
    """Run ``bratsunet <argv>`` in ``worker``; the job's scene changes are ``transaction``.

    Nodes made while submitting, and by ``on_finish`` (run in the thread that polls the job), are recorded; the
    transaction commits when the job succeeds and rolls back otherwise (cancelled, failed, or ``on_finish`` raised).
    ``folder`` (the job's temporary files) is removed after ``on_finish``, or at once if the job cannot start.
    Inside the application the job is followed by the event loop (:func:`event_loop_timer`).
    """
    def finish(job: Job) -> None:
        try:
            if on_finish is not None:
                on_finish(job)
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)

    try:
        with transaction.recording():
            job = worker.submit(argv, on_event=on_event, on_finish=transaction.guard(finish))
    except BaseException:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    timer = event_loop_timer()
    if timer is not None:
        follow_in_event_loop(job, timer)
    return job
