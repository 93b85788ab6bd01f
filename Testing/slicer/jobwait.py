"""Waiting on a worker job in tests: for an event the job reports, never for an amount of time.

Each wait ends on what the job does (an event handled, the job finished). The only clock is a hang guard of
:data:`HANG_GUARD_SECONDS`, far beyond any normal run on a slow machine: it never decides a normal pass, it only
turns a hang into a loud failure instead of a stuck suite.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

HANG_GUARD_SECONDS = 300.0


def wait_until(job, condition: Callable[[], bool], what: str) -> None:
    """Handle ``job``'s events until ``condition()`` holds; fail if the job ends first or the hang guard passes.

    ``condition`` is checked before the job's end, so an event handled together with ``done`` still counts.
    """
    guard = time.monotonic() + HANG_GUARD_SECONDS
    while not condition():
        if job.finished:
            pytest.fail(f"the job ended ({job.state}: {job.error}) before {what}")
        if time.monotonic() > guard:
            pytest.fail(f"hang guard: no {what} after {HANG_GUARD_SECONDS:g} s")
        job.poll(timeout=0.5)  # returns as soon as an event arrives


def finish(job):
    """Handle ``job``'s events until it ends (any state) and return it; fail if the hang guard passes."""
    job.wait(timeout=HANG_GUARD_SECONDS)
    if not job.finished:
        pytest.fail(f"hang guard: the job {job.argv[:1]} still runs after {HANG_GUARD_SECONDS:g} s")
    return job
