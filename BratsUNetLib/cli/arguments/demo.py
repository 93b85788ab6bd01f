"""``bratsunet demo``'s flags.

The command's work is in :mod:`BratsUNetLib.cli.demo`.
"""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = ("generate synthetic BraTS cases, train a small network for a few minutes, segment and evaluate "
        "held-out cases, and write an HTML report")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="bratsunet-demo", help="folder for the cases, model and report "
                        "(default: ./bratsunet-demo)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of an earlier demo in --output (without it, nothing is written "
                             "when they exist)")
    parser.add_argument("--minutes", type=float, default=7.0, help="training time budget in minutes (default 7)")
    parser.add_argument("--cases", type=int, nargs=3, metavar=("TRAIN", "VALIDATION", "HELD_OUT"),
                        default=(16, 2, 4), help="number of training, validation and held-out cases (default 16 2 4)")
    # One value or three (checked by the demo, so that a wrong count is one line like every other mistake).
    parser.add_argument("--shape", type=int, nargs="+", metavar="N", default=[240, 240, 155],
                        help="phantom grid in 1 mm voxels: X Y Z, or one edge for a cube (default 240 240 155, as "
                             "BraTS)")
    parser.add_argument("--network-shape", type=int, nargs="+", metavar="N", default=[64, 64, 64],
                        help="network input: each case is cropped to the brain and resized to this: X Y Z, or one "
                             "edge, a multiple of 16 (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cohort and of the training (default 0)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default auto)")
