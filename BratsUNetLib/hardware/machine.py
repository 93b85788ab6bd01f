"""The original's machine settings, shared by ``bratsunet train`` and ``bratsunet predict``.

A machine config file (``--machine_config_filename``, e.g. ``{"n_workers": 4, "n_gpus": 1, "pin_memory":
false}``) replaces the flags ``--nthreads``, ``--ngpus`` and ``--pin_memory``, as in the original: the keys it
sets win, and the flags (or their defaults) give the keys it leaves out. What ``n_workers`` and ``n_gpus`` mean
is each command's: data-loading processes and DistributedDataParallel GPUs for training, PyTorch CPU threads
and CPU-or-not for prediction.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from BratsUNetLib.errors import BratsUNetError, ConfigError
from BratsUNetLib.inputfiles import require_regular_file

_EXAMPLE = '{"n_workers": 4, "n_gpus": 1, "pin_memory": false}'
_MAX_BYTES = 64 * 1024
_COUNT_KEYS = ("n_workers", "n_gpus")


def add_machine_arguments(parser: argparse.ArgumentParser, title: str, *, default: int | None, nthreads: str,
                          ngpus: str, pin_memory: str) -> None:
    """Declare ``--machine_config_filename``, ``--nthreads``, ``--ngpus`` (both defaulting to ``default``) and
    ``--pin_memory`` in a group called ``title``; ``nthreads``/``ngpus``/``pin_memory`` are their help texts."""
    group = parser.add_argument_group(title)
    group.add_argument("--machine_config_filename",
                       help=f"JSON such as {_EXAMPLE}; the keys it sets replace the three flags below")
    group.add_argument("--nthreads", type=int, default=default, help=nthreads)
    group.add_argument("--ngpus", type=int, default=default, help=ngpus)
    group.add_argument("--pin_memory", action="store_true", help=pin_memory)


def read_machine_config(path: str) -> dict[str, Any]:
    """The keys a machine config file sets, checked: ``n_workers``/``n_gpus`` whole numbers ≥ 0, ``pin_memory``
    true or false. ConfigError naming the file otherwise."""
    # Checked without opening it: a FIFO would block, a device never end (a missing file is reported below).
    if Path(path).exists():
        require_regular_file(path, "Machine config", f"give a JSON file such as {_EXAMPLE}", ConfigError)
    try:
        if Path(path).stat().st_size > _MAX_BYTES:
            raise ConfigError(f"The machine config '{path}' is larger than {_MAX_BYTES // 1024} kB; it holds three "
                              f"keys, e.g. {_EXAMPLE}: check that this is the right file.")
        machine = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"Cannot read the machine config '{path}': {exc.strerror or exc}.") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ConfigError(f"The machine config '{path}' is not valid JSON ({exc}).") from None
    except RecursionError:  # JSON nested deeper than Python's reader can follow
        raise ConfigError(f"The machine config '{path}' is not a machine config (its JSON is nested too deeply); "
                          f"give a JSON file such as {_EXAMPLE}.") from None
    if not isinstance(machine, dict) or set(machine) - {*_COUNT_KEYS, "pin_memory"}:
        raise ConfigError(f"The machine config '{path}' must be a JSON object with the keys n_workers, n_gpus, "
                          f"pin_memory, e.g. {_EXAMPLE}.")
    for key in _COUNT_KEYS:
        value = machine.get(key)
        if key in machine and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigError(f"The machine config '{path}': {key} must be a whole number of 0 or more, got {value!r}.")
    if "pin_memory" in machine and not isinstance(machine["pin_memory"], bool):
        raise ConfigError(f"The machine config '{path}': pin_memory must be true or false, "
                          f"got {machine['pin_memory']!r}.")
    return machine


def machine_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``{"n_workers", "n_gpus", "pin_memory"}`` from the flags of :func:`add_machine_arguments`, overridden by
    the keys of the machine config file when one is given. ``n_workers``/``n_gpus`` are None where the command's
    flags default to None and neither the flag nor the file sets them."""
    for flag, value in (("--nthreads", args.nthreads), ("--ngpus", args.ngpus)):
        if value is not None and value < 0:
            raise BratsUNetError(f"{flag} must be 0 or more, got {value}.")
    settings = {"n_workers": args.nthreads, "n_gpus": args.ngpus, "pin_memory": args.pin_memory}
    if args.machine_config_filename:
        settings.update(read_machine_config(args.machine_config_filename))
    return settings
