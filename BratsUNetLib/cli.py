"""The ``bratsunet`` command line: one subcommand per module in :mod:`BratsUNetLib.commands`.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int`` and keeps
its heavy imports (torch, MONAI) inside ``run`` so that ``--help`` stays instant.
User errors (:class:`BratsUNetError`) print one line on stderr and exit with status 2; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from BratsUNetLib import __version__
from BratsUNetLib.errors import BratsUNetError, Cancelled
from BratsUNetLib.events import MODES, discard_bars

# Order is the order shown by --help.
COMMAND_MODULES = (
    "demo",
    "segment",
    "train",
    "predict",
    "evaluate",
    "phantom",
    "validate_config",
    "worker",
)

EXIT_USER_ERROR = 2
EXIT_CANCELLED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bratsunet",
        description="Brain tumour segmentation of BraTS-style MRI (FLAIR, T1, T1ce, T2) with a 3D U-Net.",
    )
    parser.add_argument("--version", action="version", version=f"bratsunet {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(f"BratsUNetLib.commands.{module_name}")
        sub = commands.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        sub.add_argument("--progress", choices=MODES, default="bar",
                         help="progress display: a bar on stderr, JSON lines on stdout (for programs), or none")
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def execute(args: argparse.Namespace, report_error: Callable[[str], None]) -> int:
    """Run a parsed command; user errors go to ``report_error`` as one line and become an exit status."""
    try:
        return int(args.run(args) or 0)
    except Cancelled as exc:
        discard_bars()
        report_error(str(exc))
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        discard_bars()
        report_error("interrupted.")
        return EXIT_CANCELLED
    except BratsUNetError as exc:
        discard_bars()
        report_error(f"{args.command}: error: {exc}")
        return EXIT_USER_ERROR


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 0
    return execute(args, lambda line: print(f"bratsunet {line}", file=sys.stderr, flush=True))
