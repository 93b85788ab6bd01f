"""The worker client against a stand-in worker program (a real subprocess speaking the job protocol)."""

from __future__ import annotations

import json
import os
import time

import pytest
from BratsUNetSlicer.worker import WorkerClient


@pytest.fixture
def client(fake_worker_command):
    client = WorkerClient(fake_worker_command)
    yield client
    client.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a killed child stays a zombie until its parent (also killed) is reaped by init
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_events_arrive_in_order_and_the_job_succeeds(client):
    seen = []
    job = client.submit(["events", "5"], on_event=seen.append)
    job.wait(timeout=60)
    assert job.state == "succeeded" and job.exit_code == 0 and job.error is None
    kinds = [(e["event"], e.get("done")) for e in seen]
    assert kinds == [("start", None), *[("progress", i) for i in range(1, 6)], ("message", None),
                     ("result", None), ("done", None)]
    assert job.result == {"value": 42}


def test_the_worker_stays_alive_between_jobs(client):
    first = client.submit(["events", "1"]).wait(timeout=60)
    pid = client.process_id
    second = client.submit(["events", "2"]).wait(timeout=60)
    assert first.state == second.state == "succeeded"
    assert client.process_id == pid


def test_poll_handles_events_without_blocking(client):
    job = client.submit(["events", "3"])
    deadline = time.monotonic() + 60
    while not job.poll() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.finished and len(job.events) == 7


def test_a_failing_job_reports_the_workers_message(client):
    finished = []
    job = client.submit(["fail"], on_finish=finished.append).wait(timeout=60)
    assert job.state == "failed" and job.exit_code == 2
    assert job.error == "segment: error: the model file 'x.pth' is damaged; download it again."
    assert finished == [job]


def test_a_crashing_worker_fails_the_job_with_its_last_words_and_is_restarted(client):
    job = client.submit(["crash"]).wait(timeout=60)
    assert job.state == "failed"
    assert "stopped unexpectedly (exit status 3)" in job.error
    assert "simulated crash" in job.error
    assert client.submit(["events", "1"]).wait(timeout=60).state == "succeeded"


def test_cancel_kills_the_worker_and_its_children_and_the_next_job_runs(client):
    job = client.submit(["hang"])
    deadline = time.monotonic() + 60
    while not job.events and time.monotonic() < deadline:
        job.poll(timeout=0.5)
    pids = json.loads(job.events[0]["text"])
    assert _alive(pids["worker"]) and _alive(pids["child"])

    job.cancel()

    assert job.state == "cancelled" and job.finished
    deadline = time.monotonic() + 10
    while (_alive(pids["worker"]) or _alive(pids["child"])) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pids["worker"]) and not _alive(pids["child"])
    assert client.submit(["events", "1"]).wait(timeout=60).state == "succeeded"


def test_one_job_at_a_time(client):
    job = client.submit(["hang"])
    with pytest.raises(RuntimeError, match="already running"):
        client.submit(["events", "1"])
    job.cancel()


def test_a_failure_while_using_the_result_fails_the_job(client):
    from BratsUNetLib.errors import ImageError

    def finish(job):
        raise ImageError("the result does not overlap the input")

    job = client.submit(["events", "1"], on_finish=finish).wait(timeout=60)
    assert job.state == "failed" and job.error == "the result does not overlap the input"
