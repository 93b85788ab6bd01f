"""A ``bratsunet`` command as an object: it parses its command line and writes one back (:meth:`Command.to_argv`).

A command is two modules of one name: its flags in :mod:`BratsUNetLib.cli.arguments` (``NAME``, ``HELP``,
``add_arguments(parser)``; torch-free, so ``--help`` is instant and the Slicer module can write command lines before
torch is installed) and its work in :mod:`BratsUNetLib.cli` (``run(args) -> int``, with its imports at the top),
imported only when the command runs, as pip loads its commands. A command's flags are spelled once, in its
``add_arguments``. Whatever builds a command line for another
process (the Slicer module's segment and training jobs, the torchrun relaunch of ``train``, the resume hint)
writes it from the parser's own actions, so a renamed flag is renamed there too, and a value the command would
refuse (an unknown option, a value outside its choices, a missing required option) raises here, in the caller,
instead of failing as a parse error in the worker.
"""

from __future__ import annotations

import argparse
import functools
import importlib
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

from BratsUNetLib.events import MODES

# The commands' module names (in BratsUNetLib.cli.arguments and BratsUNetLib.cli); the order is --help's.
COMMAND_MODULES = (
    "demo",
    "segment",
    "refine",
    "train",
    "predict",
    "evaluate",
    "phantom",
    "models",
    "validate_config",
    "worker",
)


class Command:
    """One ``bratsunet`` command: its flags from ``arguments`` (a module of :mod:`BratsUNetLib.cli.arguments`),
    its work from the module of the same name in :mod:`BratsUNetLib.cli`, imported by :meth:`run`."""

    def __init__(self, arguments: ModuleType) -> None:
        self.arguments = arguments

    @classmethod
    def every(cls) -> list[Command]:
        """Every command, in the order of :data:`COMMAND_MODULES`."""
        return list(_commands().values())

    @classmethod
    def named(cls, name: str) -> Command:
        """The command called ``name`` on the command line (e.g. ``validate-config``)."""
        commands = _commands()
        if name not in commands:
            raise ValueError(f"bratsunet has no command '{name}'; its commands: {', '.join(commands)}.")
        return commands[name]

    @property
    def name(self) -> str:
        return self.arguments.NAME

    @property
    def help(self) -> str:
        return self.arguments.HELP

    def run(self, args: argparse.Namespace) -> int:
        """Run the command on ``args`` (a parse of its command line): its work module is imported here, and with it
        torch and MONAI where the command needs them."""
        work = importlib.import_module(f"BratsUNetLib.cli.{self.arguments.__name__.rsplit('.', 1)[-1]}")
        return work.run(args)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare this command's options on ``parser``: ``--progress`` (every command has it) and its own."""
        parser.add_argument("--progress", choices=MODES, default="bar",
                            help="progress display: a bar on stderr, JSON lines on stdout (for programs), or none")
        self.arguments.add_arguments(parser)
        parser.set_defaults(run=self.run)

    @functools.cached_property
    def parser(self) -> argparse.ArgumentParser:
        """This command's parser on its own, as the ``bratsunet`` parser has it under the command's name."""
        parser = argparse.ArgumentParser(prog=f"bratsunet {self.name}", description=self.help)
        self.add_arguments(parser)
        parser.set_defaults(command=self.name)
        return parser

    @property
    def actions(self) -> list[argparse.Action]:
        """The parser's actions that put a value in the parsed namespace (not --help), one per ``dest``.

        ``parser._actions`` is the only list argparse keeps of them; several flags of one ``dest`` (``--flair``
        and its alias ``--t2f``) are one action.
        """
        return [action for action in self.parser._actions if action.default is not argparse.SUPPRESS]

    def parse(self, argv: Sequence[str]) -> argparse.Namespace:
        """Parse ``argv``, the command line after the command's name."""
        return self.parser.parse_args(list(argv))

    def to_argv(self, **values: Any) -> list[str]:
        """The command line (the command's name first) that parses to ``values`` (option names -> values).

        Keys are the options' ``dest`` names (``config_filename``, ``min_island_voxels``, ``flair``); an option
        left out, or given as None, takes its default. A flag (``store_true``) is written when its value is
        true; an ``append`` option takes a list and is written once per item; an option whose value is optional
        (``--native``) given its ``const`` is written alone. Options come in the order the command declares them,
        positional arguments last. TypeError for a key that is no option of this command or a single value where
        it takes a list, ValueError for a value it would refuse or that cannot be written.
        """
        actions = {action.dest: action for action in self.actions}
        unknown = sorted(set(values) - set(actions))
        if unknown:
            raise TypeError(f"bratsunet {self.name} has no option {', '.join(map(repr, unknown))}; its options: "
                            f"{', '.join(actions)}.")
        options: list[str] = []
        positionals: list[str] = []
        for dest, action in actions.items():
            value = values.get(dest)
            if action.option_strings:
                options += self._option_tokens(action, value)
            elif value is None:
                if action.required:
                    raise ValueError(f"bratsunet {self.name} needs its argument '{dest}'.")
            else:
                positionals += _value_tokens(action, value, self.name)
        if any(_looks_like_option(self.parser, token) for token in positionals):
            positionals.insert(0, "--")  # what follows is positional even where it looks like an option
        return [self.name, *options, *positionals]

    def argv_of(self, args: argparse.Namespace) -> list[str]:
        """The command line that parses to ``args`` (a parse of this command): to run the same invocation again."""
        return self.to_argv(**{action.dest: getattr(args, action.dest) for action in self.actions
                                if hasattr(args, action.dest)})

    def _option_tokens(self, action: argparse.Action, value: Any) -> list[str]:
        """``action``'s flag and value(s) for ``value``; nothing where the parser's default gives ``value``."""
        flag = action.option_strings[0]
        if action.nargs == 0:  # store_true, store_false, store_const
            if value is None or value == action.default:
                return []
            if value == action.const:
                return [flag]
            raise ValueError(f"bratsunet {self.name} {flag} is a flag: it sets {action.const!r} or leaves "
                             f"{action.default!r}, not {value!r}.")
        if value is None:
            if action.required:
                raise ValueError(f"bratsunet {self.name} needs {flag}.")
            return []
        if isinstance(action, argparse._AppendAction):  # argparse has no public name for action="append"
            if action.default:
                raise ValueError(f"bratsunet {self.name} {flag} appends to a default, which a command line cannot "
                                 "write.")
            items = _as_list(value, f"bratsunet {self.name} {flag}")
            if not items and action.required:
                raise ValueError(f"bratsunet {self.name} needs {flag}.")
            return [token for item in items for token in self._occurrence(action, flag, item)]
        if action.nargs == "?" and value == action.const:
            return [flag]
        return self._occurrence(action, flag, value)

    def _occurrence(self, action: argparse.Action, flag: str, value: Any) -> list[str]:
        """One occurrence of ``flag`` with ``value``; ``--flag=value`` where the value looks like an option
        (argparse would read ``--flag -x`` as a flag missing its value)."""
        tokens = _value_tokens(action, value, self.name)
        looking_like_options = [token for token in tokens if _looks_like_option(self.parser, token)]
        if looking_like_options and len(tokens) == 1:
            return [f"{flag}={tokens[0]}"]
        if looking_like_options:
            raise ValueError(f"bratsunet {self.name} {flag}: the values {tokens} cannot be written on a command "
                             f"line ({looking_like_options[0]!r} would be read as an option).")
        return [flag, *tokens]


def command_argv(name: str, **values: Any) -> list[str]:
    """``bratsunet name`` with ``values`` (option names -> values) as a command line: :meth:`Command.to_argv`."""
    return Command.named(name).to_argv(**values)


@functools.cache
def _commands() -> dict[str, Command]:
    """The commands by name, from their argument modules alone (which keeps ``--help`` instant)."""
    commands = (Command(importlib.import_module(f"BratsUNetLib.cli.arguments.{name}")) for name in COMMAND_MODULES)
    return {command.name: command for command in commands}


def _looks_like_option(parser: argparse.ArgumentParser, token: str) -> bool:
    """Whether ``parser`` reads ``token`` as an option: it starts with '-' and is not a negative number (which
    argparse takes as a value while no option of the parser looks like one; argparse's own test, private)."""
    if not token.startswith("-"):
        return False
    return not parser._negative_number_matcher.match(token) or bool(parser._has_negative_number_optionals)


def _value_tokens(action: argparse.Action, value: Any, command: str) -> list[str]:
    """The words of one occurrence of ``action`` holding ``value``, each checked against its choices."""
    name = action.option_strings[0] if action.option_strings else action.dest
    several = action.nargs not in (None, "?")
    items = _as_list(value, f"bratsunet {command} {name}") if several else [value]
    for item in items:
        if action.choices is not None and item not in action.choices:
            raise ValueError(f"bratsunet {command} {name} takes one of {', '.join(map(str, action.choices))}, "
                             f"not {item!r}.")
    return [str(item) for item in items]


def _as_list(value: Any, what: str) -> list[Any]:
    """``value`` as a list of items; a single string is refused (it would be written letter by letter)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{what} takes a list of values, not {value!r}.")
    return list(value)
