"""Starting a job (:func:`BratsUNetSlicer.jobs.start_job`), which segmenting and training share: the job's scene
changes stay only when it succeeds, and its temporary folder is gone however it ends.

The jobs run in the stand-in worker (``fake_worker.py``); each test waits for the job's end, never for a time.
"""

from __future__ import annotations

import pytest
import slicer
from BratsUNetSlicer.jobs import start_job, temporary_folder
from BratsUNetSlicer.transaction import SceneTransaction
from BratsUNetSlicer.worker import WorkerClient
from jobwait import finish

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
