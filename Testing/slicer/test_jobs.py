"""Starting a job (:func:`BratsUNetSlicer.jobs.start_job`), which segmenting and training share: the job's scene
changes stay only when it succeeds, and its temporary folder is gone however it ends.

The jobs run in the stand-in worker (``fake_worker.py``); each test waits for the job's end, never for a time.
"""

from __future__ import annotations

import time

import pytest
import slicer
from BratsUNetSlicer import jobs
from BratsUNetSlicer.jobs import start_job, temporary_folder
from BratsUNetSlicer.transaction import SceneTransaction
from BratsUNetSlicer.worker import POLL_MSEC, WorkerClient
from jobwait import HANG_GUARD_SECONDS, finish

from BratsUNetLib.errors import BratsUNetError


@pytest.fixture
def worker(fake_worker_command):
    client = WorkerClient(fake_worker_command)
    yield client
    client.close()


def _start(worker, argv, folder):
    """Start ``argv``; when it ends, a table node is made (as a segment result's import would)."""
    def on_finish(job):
        job.result["node"] = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "job result")

    return start_job(worker, argv, SceneTransaction(slicer.mrmlScene), on_finish=on_finish, folder=folder)


def test_a_succeeded_job_keeps_its_nodes_and_removes_its_folder(scene, worker):
    folder = temporary_folder("test")
    job = finish(_start(worker, ["events", "1"], folder))
    assert job.state == "succeeded", job.error
    assert scene.GetNodeByID(job.result["node"].GetID()) is not None
    assert not folder.exists()


def test_a_failed_job_takes_its_nodes_away_and_removes_its_folder(scene, worker):
    folder = temporary_folder("test")
    job = finish(_start(worker, ["fail"], folder))
    assert job.state == "failed"
    assert scene.GetNodesByClass("vtkMRMLTableNode").GetNumberOfItems() == 0
    assert not folder.exists()


def test_a_job_that_cannot_start_removes_its_folder(scene, tmp_path):
    folder = temporary_folder("test")
    broken = WorkerClient([str(tmp_path / "no-such-python")])
    with pytest.raises(BratsUNetError, match="could not be started"):
        _start(broken, ["events", "1"], folder)
    assert not folder.exists()


class EventLoopTimer:
    """A stand-in for the ``qt.QTimer`` of Slicer's event loop: the test turns the loop (``run``), which calls the
    connected slot while the timer is started, as the application would every interval."""

    def __init__(self):
        self.interval, self.slot, self.active = None, None, False

    def setInterval(self, msec):
        self.interval = msec

    def connect(self, signal, slot):
        assert signal == "timeout()"
        self.slot = slot

    def start(self):
        self.active = True

    def stop(self):
        self.active = False

    def run(self, job):
        """Turn the event loop until the timer stops (the job ended); between turns wait for the job's next event
        the way an idle event loop would, without handling it (the slot does that)."""
        guard = time.monotonic() + HANG_GUARD_SECONDS
        while self.active:
            assert time.monotonic() < guard, "hang guard: the job never ended"
            with job._queue.not_empty:  # the queue's own condition: woken when an event is put
                if not job._queue.queue:
                    job._queue.not_empty.wait(0.5)
            self.slot()


def test_inside_the_application_the_event_loop_runs_a_jobs_callbacks(scene, worker, monkeypatch):
    """``wait=False`` in the Slicer console: nobody calls wait() or poll(); the event loop's timer drives the
    job, and onProgress / onFinished run there."""
    timer = EventLoopTimer()
    monkeypatch.setattr(jobs, "event_loop_timer", lambda: timer)
    job = _start(worker, ["events", "4"], None)
    assert timer.active and timer.interval == POLL_MSEC
    progress, finished = [], []
    job.onProgress(lambda event: progress.append(event["done"])).onFinished(finished.append)

    timer.run(job)

    assert progress == [1, 2, 3, 4]
    assert finished == [job] and job.state == "succeeded"
    assert scene.GetNodeByID(job.result["node"].GetID()) is not None  # the result was imported in the loop
    later = []
    job.onFinished(later.append)  # a callback added after the end runs at once
    assert later == [job]


def test_a_script_without_the_application_runs_the_callbacks_in_wait(scene, worker):
    progress, finished = [], []
    job = _start(worker, ["events", "2"], None)
    job.onProgress(lambda event: progress.append(event["done"])).onFinished(lambda j: finished.append(j.state))
    assert job._timer is None  # no event loop here: the job moves only when the script waits
    finish(job)
    assert progress == [1, 2] and finished == ["succeeded"]
