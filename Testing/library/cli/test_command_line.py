"""A command as an object (``cli/command_line.py``): every option written back to a command line that parses to
it, as the Slicer module's jobs and the torchrun relaunch write theirs, without torch."""

import argparse
import subprocess
import sys

import pytest

from BratsUNetLib.cli.command_line import COMMAND_MODULES, Command, command_argv
from BratsUNetLib.cli.main import build_parser, main


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


def test_command_lines_are_written_without_importing_torch_monai_or_numpy():
    """The Slicer module writes its jobs' command lines before torch and MONAI may be installed."""
    code = ("import sys\nfrom BratsUNetLib.cli.command_line import Command, command_argv\n"
            "for command in Command.every():\n    command.parser.format_help()\n"
            "command_argv('segment', model=['m.pth'], flair='f.nii.gz', output='labels.nii.gz', tta=True)\n"
            "command_argv('train', config_filename='c.json', output_dir='runs', seed=1)\n"
            "print(sorted(name for name in ('torch', 'monai', 'numpy', 'scipy', 'nibabel') if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert len(Command.every()) == len(COMMAND_MODULES)
