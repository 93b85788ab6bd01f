"""Run ``bratsunet`` command lines as forked children of one process that imported the library once.

Starting ``python -m BratsUNetLib`` costs seconds (torch and MONAI imports) before any work; the kill-and-resume
test kills training dozens of times, so its children are forked from this server, each running exactly what
``python -m BratsUNetLib ARGV`` runs (``BratsUNetLib.cli.main``), already imported. The server itself never runs
a tensor operation, so every child starts with torch in a fresh state.

A child can be armed to SIGKILL itself at an event of its own run, never at a moment in time, so that the same
schedule kills at the same points on a machine ten times faster or slower:

- at its n-th file operation (a data write, a rename or a deletion: what saving an epoch is made of), partway
  through that write (``kill_at_write``);
- right after its n-th progress event of a kind (``kill_at_event``: ``{"nth": n, "events": ["start", ...] or
  null for any, "task_prefix": "epoch" or null}``), once the event's line is written and flushed, so the test
  reads where the run was.

A kill from inside is the same SIGKILL as one from outside (no handler, no clean-up runs). Every child also has a
hang guard: SIGALRM after ``HANG_GUARD_S`` ends a run that never reaches its kill point, and the test reports
that signal instead of waiting forever.

Protocol (one JSON object per line): stdin ``{"run": [argv...], "output": path, "kill_at_write": n or null,
"fraction": f, "kill_at_event": {...} or null}`` starts a child whose stdout and stderr go to ``output`` and
answers ``{"pid": N}``;
``{"wait": N}`` waits for child N and answers ``{"running": false, "exit_code": int or null, "signal": int or
null}`` (with ``"poll": true`` it does not wait: ``"running": true`` while the child runs). The first line
written is ``{"ready": true}``.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import shutil
import signal
import sys

import torch
import torch._dynamo  # imported by the first optimizer otherwise: seconds in every child

# Imported once here, inherited by every child.
import BratsUNetLib.cli.train
import BratsUNetLib.training.loop  # noqa: F401
from BratsUNetLib.config.allowlists import allowed_names
from BratsUNetLib.cli.main import main
from BratsUNetLib.events import ProgressReporter

# Far longer than any tiny run takes on the slowest machine: it only turns a hang into a failure.
HANG_GUARD_S = 600

for kind in ("network", "loss", "optimizer", "scheduler", "transform", "inferer"):
    allowed_names(kind)  # imports MONAI's namespaces: class lookups only, no tensor operation


def _arm(kill_at: int, fraction: float) -> None:
    """Make this process SIGKILL itself at its ``kill_at``-th file operation: a data write (``torch.save``,
    ``shutil.copyfile``, ``Path.write_text``) after ``fraction`` of its bytes, or a rename / deletion before it
    (``fraction`` < 0.5) or after it."""
    count = [0]

    def reached() -> bool:
        count[0] += 1
        return count[0] == kill_at

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def write_part(path, data: bytes) -> None:
        with open(path, "wb") as stream:
            stream.write(data[: int(len(data) * fraction)])
        die()

    def writer(real, to_bytes):
        def write(self_or_obj, target, *args, **kwargs):
            if reached():
                write_part(target, to_bytes(real, self_or_obj, target, *args, **kwargs))
            return real(self_or_obj, target, *args, **kwargs)
        return write

    def torch_bytes(real, obj, target, *args, **kwargs) -> bytes:
        buffer = io.BytesIO()
        real(obj, buffer, *args, **kwargs)
        return buffer.getvalue()

    def operation(real):
        def run(*args, **kwargs):
            if not reached():
                return real(*args, **kwargs)
            if fraction < 0.5:
                die()
            result = real(*args, **kwargs)
            die()
            return result
        return run

    torch.save = writer(torch.save, torch_bytes)
    shutil.copyfile = writer(shutil.copyfile, lambda real, source, target, *a, **k: pathlib.Path(source).read_bytes())
    real_write_text = pathlib.Path.write_text
    pathlib.Path.write_text = lambda self, text, *a, **k: (
        write_part(self, text.encode()) if reached() else real_write_text(self, text, *a, **k))
    os.replace = operation(os.replace)
    pathlib.Path.unlink = operation(pathlib.Path.unlink)


def _arm_event(nth: int, events: list[str] | None, task_prefix: str | None) -> None:
    """Make this process SIGKILL itself right after it emits its ``nth`` progress event whose kind is one of
    ``events`` (any when None) and whose task starts with ``task_prefix`` (any when None)."""
    count = [0]
    real_emit = ProgressReporter.emit

    def emit(self, event: str, **fields) -> None:
        real_emit(self, event, **fields)
        if (events is None or event in events) and (
                task_prefix is None or str(fields.get("task", "")).startswith(task_prefix)):
            count[0] += 1
            if count[0] == nth:
                sys.stdout.flush()
                sys.stderr.flush()
                os.kill(os.getpid(), signal.SIGKILL)

    ProgressReporter.emit = emit


def _child(request: dict) -> None:
    """In the forked child: run the command line with its output in the given file, then exit with its status."""
    code = 1
    try:
        stream = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(stream, 1)
        os.dup2(stream, 2)
        signal.alarm(HANG_GUARD_S)
        if request.get("kill_at_write"):
            _arm(int(request["kill_at_write"]), float(request.get("fraction", 0.5)))
        if request.get("kill_at_event"):
            at = request["kill_at_event"]
            _arm_event(int(at["nth"]), at.get("events"), at.get("task_prefix"))
        code = main(request["run"])
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if "run" in request:
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                _child(request)
            answer = {"pid": pid}
        else:
            pid, status = os.waitpid(request["wait"], os.WNOHANG if request.get("poll") else 0)
            answer = {"running": pid == 0,
                      "exit_code": os.WEXITSTATUS(status) if pid and os.WIFEXITED(status) else None,
                      "signal": os.WTERMSIG(status) if pid and os.WIFSIGNALED(status) else None}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    serve()
