"""``bratsunet refine``'s flags.

The command's work is in :mod:`BratsUNetLib.cli.refine`.
"""

from __future__ import annotations

import argparse
import re

from BratsUNetLib.cli.arguments.inference import BACKENDS
from BratsUNetLib.cli.arguments.segment import CHANNEL_FLAGS

NAME = "refine"
HELP = ("correct a segmentation with clicks (points in RAS mm): a guided model recomputes the part of the "
        "segmentation around them")


# A point whose R is negative ("--add -12.5,30,8:TC") looks like an option to argparse, which only takes a lone
# negative number for a value; argparse has no public setting for this, so its matcher is widened to such points.
NEGATIVE_POINT = re.compile(r"^-\d+$|^-\d*\.\d+$|^-[\d.]+(e-?\d+)?,[-+\d.e,]+(:\w+)?$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser._negative_number_matcher = NEGATIVE_POINT  # (a private attribute: see NEGATIVE_POINT)
    parser.add_argument("--model", required=True, metavar="CKPT",
                        help="a guided model's checkpoint (.pth; trained with \"guidance\" in its config)")
    inputs = parser.add_argument_group("the case: its images (NIfTI) and its current segmentation, a BraTS label "
                                       "map on the grid of the model's first channel (normally FLAIR)")
    for dest, flag, alias, text in CHANNEL_FLAGS:
        inputs.add_argument(flag, alias, dest=dest, metavar="FILE", help=text)
    inputs.add_argument("--segmentation", required=True, metavar="LABELS.nii.gz",
                        help="the segmentation to correct (bratsunet segment's --output, or an earlier refine's)")
    clicks = parser.add_argument_group("clicks, each R,A,S in mm as 3D Slicer shows them, with an optional region "
                                       "WT, TC or ET (default WT); give each flag as often as needed")
    clicks.add_argument("--add", action="append", default=[], metavar="R,A,S[:REGION]",
                        help="this point is in REGION (a label 1, 2, 3 or 4 names the region it is innermost in)")
    clicks.add_argument("--remove", action="append", default=[], metavar="R,A,S[:REGION]",
                        help="this point is not in REGION")
    parser.add_argument("--output", required=True, metavar="LABELS.nii.gz",
                        help="the corrected label map to write (uint8); never one of the inputs")
    parser.add_argument("--labels", choices=("brats2020", "brats2021"), default=None,
                        help="the label scheme of --segmentation and --output: enhancing tumour 4 (brats2020) or 3 "
                             "(brats2021+); default: as the model was trained")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="how the network runs (default auto: the fastest installed option whose outputs agree "
                             "with PyTorch fp32; every click's box has one size, so an exported network is reused)")
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
