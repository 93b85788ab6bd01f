"""The command line's entry points, help, and the worker protocol the Slicer module relies on."""

import json
import subprocess
import sys

import pytest

from BratsUNetLib import __version__
from BratsUNetLib.cli.command_line import COMMAND_MODULES
from BratsUNetLib.cli.main import main


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
    code = ("import contextlib, io, sys\nfrom BratsUNetLib.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    main(['segment', '--help'])\n"
            "print(sorted(name for name in ('torch', 'monai', 'nibabel', 'scipy') if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_user_error_exit_status_and_message_survive_the_quick_exit(tmp_path):
    broken = tmp_path / "config.json"
    broken.write_text("{not json")
    result = run_module("validate-config", str(broken))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("bratsunet validate-config: error: ")


@pytest.mark.parametrize("with_thread", [False, True])
def test_quick_exit_runs_atexit_handlers_and_waits_for_running_threads(tmp_path, with_thread):
    """exit_now skips interpreter finalization only: output is flushed, atexit handlers run, threads finish.

    The thread is held until the main thread has ended (joining the main thread returns once the interpreter
    shuts down), so it is still running when exit_now looks, on any machine, and writes only if the process
    then waits for it.
    """
    program = (
        "import atexit, pathlib, sys, threading\nfrom BratsUNetLib.cli.main import exit_now\n"
        "folder = pathlib.Path(sys.argv[1])\n"
        "atexit.register(lambda: (folder / 'atexit').write_text('ran'))\n"
        "if sys.argv[2] == 'thread':\n"
        "    threading.Thread(target=lambda: (threading.main_thread().join(),\n"
        "                                     (folder / 'thread').write_text('done'))).start()\n"
        "print('last line', end='')\nexit_now(3)\n")
    result = subprocess.run([sys.executable, "-c", program, str(tmp_path), "thread" if with_thread else "-"],
                            capture_output=True, text=True, timeout=120)  # a hang guard
    assert result.returncode == 3
    assert result.stdout == "last line"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "thread").exists() == with_thread
    if with_thread:
        assert (tmp_path / "thread").read_text() == "done"


def test_the_program_loads_monai_without_its_unused_extras_which_stay_importable():
    program = ("import importlib, importlib.util, sys\nfrom BratsUNetLib.cli import main as cli\n"
               "cli.import_monai_without_unused_extras()\n"
               "installed = [name for name in cli.MONAI_EXTRAS_UNUSED if importlib.util.find_spec(name)]\n"
               "print(sorted(name for name in installed if name in sys.modules))\n"
               "from monai.transforms import Resized\n"
               "print(all(importlib.import_module(name) for name in installed), len(installed))\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded_by_monai, importable = result.stdout.splitlines()
    assert loaded_by_monai == "[]"
    assert importable.startswith("True ")
