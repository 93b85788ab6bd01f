"""The real worker (``python -m BratsUNetLib worker``), held right after its n-th event of one kind.

``held_worker.py EVENT N``: the worker runs jobs exactly as Slicer's does, except that once it has written its
N-th ``EVENT`` event (e.g. ``epoch 1``: the first epoch's checkpoint and log row are saved and reported) it stops
there until its client lets go of it. A test that needs a job "still running" at a known point (to cancel a
training between two epochs) then gets it on any machine, instead of hoping the run is slower than the test.

Held means blocked reading stdin: the client sends no job line while a job runs, so the read ends only at
end-of-file, when the client closes the pipe or is gone; the worker then exits instead of going on.
"""

from __future__ import annotations

import os
import sys


def hold_after(kind: str, count: int) -> None:
    """Make every progress reporter of this process block after the ``count``-th ``kind`` event it writes."""
    from BratsUNetLib.events import ProgressReporter

    real_emit = ProgressReporter.emit
    seen = [0]

    def emit(self, event: str, **fields) -> None:
        real_emit(self, event, **fields)
        if event == kind:
            seen[0] += 1
            if seen[0] == count:
                sys.stdin.read()
                os._exit(1)

    ProgressReporter.emit = emit


if __name__ == "__main__":
    event_kind, event_count = sys.argv[1], int(sys.argv[2])
    hold_after(event_kind, event_count)
    sys.argv = [sys.argv[0], "worker"]
    from BratsUNetLib.cli.main import run_console

    run_console()
