"""``bratsunet worker``: no flags of its own; its progress is JSON lines.

The command's work is in :mod:`BratsUNetLib.cli.worker`.
"""

from __future__ import annotations

import argparse

NAME = "worker"
HELP = "serve bratsunet commands as JSON-lines jobs on stdin/stdout (used by the Slicer module)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(progress="json")
