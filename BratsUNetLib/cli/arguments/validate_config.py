"""``bratsunet validate-config``'s argument.

The command's work is in :mod:`BratsUNetLib.cli.validate_config`.
"""

from __future__ import annotations

import argparse

NAME = "validate-config"
HELP = ("Check a training config (the original 3DUnetCNN JSON format) and list every problem at once; "
        "exit status 2 when there are any.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="the JSON config file to check")
