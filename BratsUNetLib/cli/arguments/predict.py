"""``bratsunet predict``'s flags (the original predict.py's, and more).

The command's work is in :mod:`BratsUNetLib.cli.predict`.
"""

from __future__ import annotations

import argparse

from BratsUNetLib.cli.arguments.inference import add_inference_arguments
from BratsUNetLib.hardware.machine import add_machine_arguments

NAME = "predict"
HELP = "predict the cases of a config's file list (original predict.py flags), optionally with label maps"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config_filename", required=True, help="config (JSON) listing the cases in <group>_filenames")
    parser.add_argument("--model_filename", required=True, action="append",
                        help="checkpoint (.pth) or model name (bratsunet models list); give it several times to "
                             "average models (e.g. cross-validation folds)")
    parser.add_argument("--output_directory", required=True, help="folder for the predictions")
    parser.add_argument("--group", default="test", help="which list to predict: <group>_filenames (default test)")
    parser.add_argument("--activation", choices=("sigmoid", "softmax", "none"), default=None,
                        help="applied to the network outputs; default: as the config's loss says")
    parser.add_argument("--segment", action="store_true", help="also write a label map <name>_seg.nii.gz per case")
    parser.add_argument("--threshold", type=float, default=None,
                        help="with --segment: a channel counts where its output is above this (default 0.5)")
    parser.add_argument("--sum", action="store_true",
                        help="with --segment, for models whose channels are separate labels: label voxels where the "
                             "sum of the channels is above the threshold")
    parser.add_argument("--use_contours", action="store_true",
                        help="for models trained with contour channels; not supported (an error)")
    parser.add_argument("--no_overwrite", action="store_true", help="skip cases whose outputs all exist")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace outputs that exist (without it, and without --no_overwrite, existing outputs "
                             "are an error before any case is predicted)")
    parser.add_argument("--labels", choices=("brats2020", "brats2021"), default=None,
                        help="with --segment: enhancing tumour as 4 (brats2020) or 3 (brats2021+); default: as trained")
    parser.add_argument("--min-island-voxels", type=int, default=0, metavar="N",
                        help="with --segment: remove disconnected tumour pieces smaller than N voxels")
    add_inference_arguments(parser)
    add_machine_arguments(parser, "machine (as the original; prediction reads one case at a time)", default=None,
                          nthreads="CPU threads for PyTorch (default: all)",
                          ngpus="0 runs on the CPU; otherwise --device decides",
                          pin_memory="accepted for compatibility; no effect here")
