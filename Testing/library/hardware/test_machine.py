"""The original's machine settings shared by ``train`` and ``predict``: the file's keys win over the flags."""

from __future__ import annotations

import argparse
import json

import pytest

from BratsUNetLib.errors import BratsUNetError, ConfigError
from BratsUNetLib.hardware.machine import add_machine_arguments, machine_settings


def settings(*argv: str, default: int | None = 1) -> dict:
    parser = argparse.ArgumentParser()
    add_machine_arguments(parser, "machine", default=default, nthreads="", ngpus="", pin_memory="")
    return machine_settings(parser.parse_args(argv))


def test_flags_and_their_defaults_without_a_file():
    assert settings() == {"n_workers": 1, "n_gpus": 1, "pin_memory": False}
    assert settings(default=None) == {"n_workers": None, "n_gpus": None, "pin_memory": False}
    assert settings("--nthreads", "0", "--ngpus", "2", "--pin_memory") == {"n_workers": 0, "n_gpus": 2,
                                                                           "pin_memory": True}


def test_the_files_keys_replace_the_flags_and_the_flags_fill_the_rest(tmp_path):
    machine = tmp_path / "machine.json"
    machine.write_text(json.dumps({"n_workers": 4, "pin_memory": True}))
    assert settings("--machine_config_filename", str(machine), "--nthreads", "2", "--ngpus", "0") == {
        "n_workers": 4, "n_gpus": 0, "pin_memory": True}


@pytest.mark.parametrize("content, expected", [
    ("{not json", "is not valid JSON"),
    ('[4, 1]', "must be a JSON object with the keys n_workers, n_gpus, pin_memory"),
    ('{"n_workers": 4, "gpus": 1}', "must be a JSON object with the keys n_workers, n_gpus, pin_memory"),
    ('{"n_workers": -1}', "n_workers must be a whole number of 0 or more, got -1"),
    ('{"n_gpus": true}', "n_gpus must be a whole number of 0 or more, got True"),
    ('{"pin_memory": "false"}', "pin_memory must be true or false"),
])
def test_a_bad_machine_config_names_the_file_and_the_problem(tmp_path, content, expected):
    machine = tmp_path / "machine.json"
    machine.write_text(content)
    with pytest.raises(ConfigError) as raised:
        settings("--machine_config_filename", str(machine))
    assert str(machine) in str(raised.value) and expected in str(raised.value)


def test_a_missing_machine_config_and_negative_flags_are_user_errors(tmp_path):
    with pytest.raises(ConfigError, match="Cannot read the machine config .*gone.json"):
        settings("--machine_config_filename", str(tmp_path / "gone.json"))
    with pytest.raises(BratsUNetError, match="--ngpus must be 0 or more, got -1"):
        settings("--ngpus", "-1", default=None)
