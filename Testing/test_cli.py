"""The command line's entry points, help, and the worker protocol the Slicer module relies on."""

import json
import subprocess
import sys

from BratsUNetLib import __version__
from BratsUNetLib.cli import COMMAND_MODULES, main


def run_module(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "BratsUNetLib", *args], input=stdin, capture_output=True,
                          text=True, timeout=120)


def test_help_lists_every_command(capsys):
    assert main([]) == 0
    shown = capsys.readouterr().out
    for module_name in COMMAND_MODULES:
        assert module_name.replace("_", "-") in shown


def test_python_dash_m_prints_version():
    result = run_module("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"bratsunet {__version__}"


def test_unknown_command_exits_non_zero_without_traceback():
    result = run_module("no-such-command")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "invalid choice" in result.stderr


def test_worker_answers_each_job_with_events_and_done_and_keeps_running():
    jobs = "\n".join([
        json.dumps({"job": "a", "argv": ["no-such-command"]}),
        "this is not json",
        json.dumps({"job": "b", "argv": ["worker"]}),
    ]) + "\n"
    result = run_module("worker", stdin=jobs)
    assert result.returncode == 0
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["event"], e["job"]) for e in events] == [
        ("error", "a"), ("done", "a"), ("error", None), ("done", None), ("error", "b"), ("done", "b")]
    assert all(e["exit_code"] == 2 for e in events if e["event"] == "done")
    assert "bratsunet no-such-command" in events[0]["message"]


def test_segment_help_is_instant_it_imports_neither_torch_nor_monai():
    code = ("import contextlib, io, sys\nfrom BratsUNetLib.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    main(['segment', '--help'])\n"
            "print(sorted(name for name in ('torch', 'monai', 'nibabel', 'scipy') if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
