"""The command line's entry points, help, and the worker protocol the Slicer module relies on."""

import argparse
import json
import subprocess
import sys

import pytest

from BratsUNetLib import __version__
from BratsUNetLib.cli.command_line import COMMAND_MODULES, Command, command_argv
from BratsUNetLib.cli.main import build_parser, main


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


# ------------------------------------------------------------------------------- command lines written back

def accepted_values(action: argparse.Action) -> list:
    """Values that ``action``'s option accepts, other than its default: the table the round trip runs over."""
    if action.nargs == 0:  # a flag
        return [action.const]
    if action.choices is not None:
        words = [choice for choice in action.choices if choice != action.default]
    elif action.type in (int, float):
        words = [action.type(text) for text in ("3", "-2")] + ([0.25, -1.5] if action.type is float else [])
    else:  # a path or a name: spaces, and a leading '-' that must not be read as a flag
        words = [(action.type or str)(text) for text in ("case 1/flair.nii.gz", "-odd name.json")]
    if action.nargs == "?":
        words = [*words, action.const]
    if action.nargs == "+":
        words = [words[:1], words[:2]]
    elif isinstance(action.nargs, int):
        words = [[words[0]] * action.nargs]
    if isinstance(action, argparse._AppendAction):
        words = [[words[0]], [words[0], words[-1]]]
    return words


def bratsunet_parse(argv: list[str]) -> dict:
    """What the ``bratsunet`` program (and the Slicer module's worker) parses from ``argv``."""
    return vars(build_parser().parse_args(argv))


@pytest.mark.parametrize("command", Command.every(), ids=lambda command: command.name)
def test_every_option_of_every_command_is_written_back_to_a_command_line_that_parses_to_it(command):
    required = {action.dest: accepted_values(action)[0] for action in command.actions
                if action.required}
    defaults = bratsunet_parse(command.to_argv(**required))
    every_option = dict(required)
    for action in command.actions:
        for value in accepted_values(action):
            values = {**required, action.dest: value}
            argv = command.to_argv(**values)
            assert argv[0] == command.name
            assert bratsunet_parse(argv) == vars(command.parse(argv[1:])) == {**defaults, **values}, argv
            every_option[action.dest] = value
    argv = command.to_argv(**every_option)
    assert bratsunet_parse(argv) == {**defaults, **every_option}, argv


def test_a_segment_command_line_is_spelled_as_the_user_would_type_it():
    argv = command_argv("segment", flair="f.nii.gz", t1="t1.nii.gz", model=["a.pth", "b.pth"], output="labels.nii.gz",
                        tta=True, native="auto", overwrite=False, probabilities=None, threshold=0.4)
    assert argv == ["segment", "--model", "a.pth", "--model", "b.pth", "--flair", "f.nii.gz", "--t1", "t1.nii.gz",
                    "--output", "labels.nii.gz", "--native", "--tta", "--threshold", "0.4"]
    assert command_argv("validate-config", config="-config.json") == ["validate-config", "--", "-config.json"]


def test_values_a_command_would_refuse_raise_where_the_command_line_is_written():
    with pytest.raises(TypeError, match="bratsunet segment has no option 'flare'"):
        command_argv("segment", model=["m.pth"], output="labels.nii.gz", flare="f.nii.gz")
    with pytest.raises(ValueError, match="--labels takes one of brats2020, brats2021, not 'brats2019'"):
        command_argv("segment", model=["m.pth"], output="labels.nii.gz", labels="brats2019")
    with pytest.raises(ValueError, match="needs --output"):
        command_argv("segment", model=["m.pth"])
    with pytest.raises(TypeError, match="--model takes a list of values"):
        command_argv("segment", model="m.pth", output="labels.nii.gz")
    with pytest.raises(ValueError, match="has no command 'segmentation'"):
        command_argv("segmentation")


def test_train_relaunched_under_torchrun_runs_the_same_command_line(tmp_path, monkeypatch):
    """``--ngpus 2`` started by hand hands torchrun a command line that parses to every flag the user gave."""
    import torch

    from BratsUNetLib.training import distributed

    relaunched = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(distributed, "relaunch", lambda n, argv: relaunched.append((n, argv)) or 0)
    argv = ["train", "--config_filename", str(tmp_path / "my config.json"), "--output_dir", str(tmp_path),
            "--ngpus", "2", "--nthreads", "3", "--seed", "7", "--batch_size", "4", "--n_examples", "0",
            "--cache", "disk", "--device", "cuda", "--debug", "--pin_memory", "--progress", "json",
            "--pretrained_model_filename", str(tmp_path / "start.pth"),
            "--training_log_filename", str(tmp_path / "log.csv")]
    assert main(argv) == 0
    ((processes, relaunch_argv),) = relaunched
    assert processes == 2
    assert bratsunet_parse(relaunch_argv) == bratsunet_parse(argv)
