"""``bratsunet evaluate``'s flags.

The command's work is in :mod:`BratsUNetLib.cli.evaluate`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "evaluate"
HELP = "compare predicted label maps with reference segmentations (Dice, HD95, volumes; BraTS 2020 rules)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prediction", required=True, type=Path,
                        help="predicted label map, or a folder of them (<case>.nii.gz or <case>/<case>_seg.nii.gz)")
    parser.add_argument("--reference", required=True, type=Path,
                        help="reference segmentation, or a folder of them (BraTS layout <case>/<case>_seg.nii.gz)")
    parser.add_argument("--output", type=Path, default=None,
                        help="also write the results to this .json or .csv file")
    parser.add_argument("--overwrite", action="store_true", help="replace the --output file if it exists")
    parser.add_argument("--labels", choices=("brats2020", "brats2021"), default="brats2020",
                        help="label convention: enhancing tumour is 4 (brats2020, default) or 3 (brats2021+)")
