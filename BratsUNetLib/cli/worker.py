"""``bratsunet worker``: a long-lived process that runs ``bratsunet`` commands as jobs for the Slicer module.

Protocol (one JSON object per line, UTF-8):

- stdin, one job per line: ``{"job": "<id>", "argv": ["segment", "--model", "...", ...]}``.
- stdout: the job's events (see :mod:`BratsUNetLib.events`), each with ``"job": "<id>"``, ending with
  ``{"event": "done", "job": "<id>", "exit_code": N}`` (0 success, 2 user error preceded by an ``error`` event
  with the one-line message, 130 cancelled).

Keeping one process alive means torch is imported and models are loaded once per Slicer session instead of once
per click. Cancel is killing the process; the next job starts a new one. Anything a command prints goes to
stderr so that stdout carries JSON only.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
import threading

from BratsUNetLib.cli.arguments.worker import NAME
from BratsUNetLib.cli.main import build_parser, execute
from BratsUNetLib.errors import ExitCode
from BratsUNetLib.events import ProgressReporter, job_scope

# What a segmentation job imports (torch, MONAI, nibabel: seconds), imported while the worker waits for its first job.
PRELOADED_MODULES = ("BratsUNetLib.cli.segment", "BratsUNetLib.inference.backends")


def run(args: argparse.Namespace) -> int:
    protocol = sys.stdout
    parser = build_parser()
    with contextlib.redirect_stdout(sys.stderr):
        # The first job then does not wait for the imports. Jobs start only once they are done: importing MONAI
        # briefly marks some packages missing (BratsUNetLib.inference.pipeline), which a job importing them would see.
        preload = threading.Thread(target=_preload, name="preload")
        preload.start()
        for line in sys.stdin:
            if not line.strip():
                continue
            job_id, argv, problem = _parse_job(line)
            with job_scope(protocol, job=job_id):
                reporter = ProgressReporter("json")
                if problem:
                    reporter.emit("error", message=problem)
                    exit_code = ExitCode.USER_ERROR
                else:
                    preload.join()
                    exit_code = _run_job(parser, argv, reporter)
                reporter.emit("done", exit_code=exit_code)
    return 0


def _preload() -> None:
    """Import :data:`PRELOADED_MODULES`; a module that fails to import fails again, with its message, in the job."""
    for name in PRELOADED_MODULES:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def _parse_job(line: str) -> tuple[str | None, list[str], str | None]:
    """Return (job id, argv, problem) for one stdin line; ``problem`` is None when the line is a valid job."""
    expected = 'a job line must be {"job": id, "argv": [command, ...]}'
    try:
        request = json.loads(line)
    except ValueError as exc:
        return None, [], f"malformed job line ({exc}); {expected}"
    if not isinstance(request, dict) or not isinstance(request.get("argv"), list):
        return (str(request.get("job")) if isinstance(request, dict) else None), [], expected
    return str(request.get("job")), [str(item) for item in request["argv"]], None


def _run_job(parser: argparse.ArgumentParser, argv: list[str], reporter: ProgressReporter) -> int:
    if not argv or argv[0] == NAME:
        reporter.emit("error", message=f"not a job command: {' '.join(argv) or '(empty)'}")
        return ExitCode.USER_ERROR
    try:
        job_args = parser.parse_args([*argv, "--progress", "json"])
    except SystemExit:  # argparse has explained the problem on stderr
        reporter.emit("error", message=f"invalid command line: bratsunet {' '.join(argv)}")
        return ExitCode.USER_ERROR
    return execute(job_args, lambda text: reporter.emit("error", message=text))
