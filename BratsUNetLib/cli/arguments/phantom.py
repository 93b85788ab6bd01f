"""``bratsunet phantom``'s flags.

The command's work is in :mod:`BratsUNetLib.cli.phantom`.
"""

from __future__ import annotations

import argparse

NAME = "phantom"
HELP = ("write synthetic BraTS 2020-style cases (<case>/<case>_flair.nii.gz, _t1, _t1ce, _t2, _seg) with brain "
        "anatomy, gliomas and realistic MRI contrasts, reproducible from a seed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, metavar="DIR", help="folder to write the case folders into")
    parser.add_argument("--n-cases", type=int, required=True, metavar="N", help="number of cases to write")
    parser.add_argument("--shape", type=int, nargs=3, default=[240, 240, 155], metavar=("X", "Y", "Z"),
                        help="grid size in 1 mm voxels (default: 240 240 155, as BraTS; e.g. 64 64 64 for "
                             "quick experiments, the brain is scaled to fit)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed (default 0); case i is the same for a seed whatever --n-cases is")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace case files that exist (without it, nothing is written when any exists)")
    parser.add_argument("--left-handed", action="store_true",
                        help="store the images with a left-handed affine diag(-1, 1, 1) instead of BraTS's LPS "
                             "diag(-1, -1, 1); the anatomy stays at the same world positions")
