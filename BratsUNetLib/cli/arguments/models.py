"""``bratsunet models``'s arguments: list, download or import models by name.

The command's work is in :mod:`BratsUNetLib.cli.models`.
"""

from __future__ import annotations

import argparse

NAME = "models"
HELP = ("the models available by name: list them (catalogue and imported, downloaded or not), download one, or "
        "import a local MONAI bundle; a name works wherever --model takes a file")
ACTIONS = ("list", "download", "import")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS,
                        help="list: every model and where it is; download NAME; import PATH (a bundle .zip or folder)")
    parser.add_argument("target", nargs="?", metavar="NAME_OR_PATH",
                        help="the model name (download) or the bundle (import)")
    parser.add_argument("--name", help="import: the name to give the model (default: the bundle's file name)")
    parser.add_argument("--catalogue", metavar="PATH_OR_URL",
                        help="the model catalogue (default: $BRATSUNET_MODEL_CATALOGUE, else the one shipped)")
    parser.add_argument("--overwrite", action="store_true", help="import: replace a model of the same name")
