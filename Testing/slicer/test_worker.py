"""The worker client against a stand-in worker program (a real subprocess speaking the job protocol)."""

from __future__ import annotations

import json
import os
import select
import time

import pytest
from BratsUNetSlicer.worker import WorkerClient
from jobwait import HANG_GUARD_SECONDS, finish, wait_until

from BratsUNetLib.errors import BratsUNetError


@pytest.fixture
def client(fake_worker_command):
    client = WorkerClient(fake_worker_command)
    yield client
    client.close()


def _wait_for_exit(pid: int) -> None:
    """Block until process ``pid`` (not our child) has ended: its pidfd becomes readable (Linux), not a clock."""
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:  # already gone (and reaped)
        return
    try:
        readable, _, _ = select.select([descriptor], [], [], HANG_GUARD_SECONDS)
    finally:
        os.close(descriptor)
    if not readable:
        pytest.fail(f"hang guard: process {pid} still runs {HANG_GUARD_SECONDS:g} s after the kill")


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
    job = finish(client.submit(["events", "5"], on_event=seen.append))
    assert job.state == "succeeded" and job.exit_code == 0 and job.error is None
    kinds = [(e["event"], e.get("done")) for e in seen]
    assert kinds == [("start", None), *[("progress", i) for i in range(1, 6)], ("message", None),
                     ("result", None), ("done", None)]
    assert job.result == {"value": 42}


def test_the_worker_stays_alive_between_jobs(client):
    first = finish(client.submit(["events", "1"]))
    pid = client.process_id
    second = finish(client.submit(["events", "2"]))
    assert first.state == second.state == "succeeded"
    assert client.process_id == pid


def test_poll_handles_events_without_blocking(client):
    job = client.submit(["events", "3"])
    guard = time.monotonic() + HANG_GUARD_SECONDS
    while not job.poll():  # poll() returns at once, whether or not events came: the loop ends on "done"
        assert time.monotonic() < guard, "hang guard: the job never finished"
        time.sleep(0.01)  # spare the CPU between polls; how many polls it takes does not matter
    assert job.finished and len(job.events) == 7


def test_a_failing_job_reports_the_workers_message(client):
    finished = []
    job = finish(client.submit(["fail"], on_finish=finished.append))
    assert job.state == "failed" and job.exit_code == 2
    assert job.error == "segment: error: the model file 'x.pth' is damaged; download it again."
    assert finished == [job]


def test_a_crashing_worker_fails_the_job_with_its_last_words_and_is_restarted(client):
    job = finish(client.submit(["crash"]))
    assert job.state == "failed"
    assert "stopped unexpectedly (exit status 3)" in job.error
    assert "simulated crash" in job.error
    assert finish(client.submit(["events", "1"])).state == "succeeded"


def test_cancel_kills_the_worker_and_its_children_and_the_next_job_runs(client):
    job = client.submit(["hang"])  # the stand-in holds the worker and its child until they are killed
    wait_until(job, lambda: bool(job.events), "message with the process ids")
    pids = json.loads(job.events[0]["text"])
    assert _alive(pids["worker"]) and _alive(pids["child"])

    job.cancel()

    assert job.state == "cancelled" and job.finished
    for pid in pids.values():  # SIGKILL takes effect when the process is next scheduled: wait for that
        _wait_for_exit(pid)
    assert not _alive(pids["worker"]) and not _alive(pids["child"])
    assert finish(client.submit(["events", "1"])).state == "succeeded"


def test_one_job_at_a_time(client):
    job = client.submit(["hang"])  # held until cancelled: still running when the second job comes, on any machine
    with pytest.raises(BratsUNetError, match="already running"):
        client.submit(["events", "1"])
    job.cancel()


def test_a_failure_while_using_the_result_fails_the_job(client):
    from BratsUNetLib.errors import ImageError

    def fail_the_result(job):
        raise ImageError("the result does not overlap the input")

    job = finish(client.submit(["events", "1"], on_finish=fail_the_result))
    assert job.state == "failed" and job.error == "the result does not overlap the input"
