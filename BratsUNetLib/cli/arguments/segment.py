"""``bratsunet segment``'s flags.

The command's work is in :mod:`BratsUNetLib.cli.segment`.
"""

from __future__ import annotations

import argparse

from BratsUNetLib.cli.arguments.inference import add_inference_arguments

NAME = "segment"
HELP = "segment one case (FLAIR, T1, T1ce, T2) into a BraTS label map (1 necrotic, 2 edema, 4 enhancing tumour)"

# (dest, BraTS 2020 flag, BraTS 2023 alias, what it is); the order is the usual channel order.
CHANNEL_FLAGS = (
    ("flair", "--flair", "--t2f", "T2-FLAIR image"),
    ("t1", "--t1", "--t1n", "native T1 image"),
    ("t1ce", "--t1ce", "--t1c", "contrast-enhanced T1 image"),
    ("t2", "--t2", "--t2w", "T2 image"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", required=True, metavar="CKPT",
                        help="checkpoint (.pth) or model name (bratsunet models list); give it several times to "
                             "average models (e.g. cross-validation folds)")
    parser.add_argument("--config", metavar="CONFIG",
                        help="the training config (JSON); needed only for original 3DUnetCNN checkpoints "
                             "(bare weights)")
    inputs = parser.add_argument_group("input images (NIfTI); the label map is written on the grid of the "
                                       "model's first channel, normally FLAIR")
    for dest, flag, alias, text in CHANNEL_FLAGS:
        inputs.add_argument(flag, alias, dest=dest, metavar="FILE", help=text)
    parser.add_argument("--output", required=True, metavar="LABELS.nii.gz", help="label map to write (uint8)")
    parser.add_argument("--probabilities", metavar="PROBS.nii.gz",
                        help="also write the WT/TC/ET probability maps (float32, 4-D x,y,z,3)")
    add_inference_arguments(parser)
    parser.add_argument("--labels", choices=("brats2020", "brats2021"), default=None,
                        help="label for enhancing tumour: 4 (brats2020) or 3 (brats2021+); default: as the model "
                             "was trained (4 unless its labels use 3)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="a region is present where its probability is above this (default 0.5)")
    parser.add_argument("--min-island-voxels", type=int, default=0, metavar="N",
                        help="remove disconnected tumour pieces smaller than N voxels (default 0: keep all)")
    parser.add_argument("--overwrite", action="store_true", help="replace output files that exist")
