"""``bratsunet predict``: the original predict.py — every case of a config's file list to probability maps.

Same flags and outputs as the original: ``<output_directory>/<name>.nii.gz`` holds the activated network
outputs (float32, 4-D x,y,z,channels) on the first input's grid, ``<name>`` being the first input's file name
up to its first dot; where two cases would get one name (first images of the same name in different folders),
both get their folder's name in front (:func:`BratsUNetLib.inference.writing.prediction_names`). In addition
``--segment`` writes the label map ``<name>_seg.nii.gz`` (uint8): with the WT/TC/ET hierarchy as ORIGINAL.md
§3 with ``--threshold``; for models whose channels are separate labels, the most probable label where any
channel (``--sum``: the channels' sum) exceeds ``--threshold``.

Before any case is predicted the whole plan of outputs is checked: an output that is one of the config's
inputs (e.g. ``--output_directory`` the case folder itself) is refused even with ``--overwrite``, and outputs that
exist are listed unless ``--overwrite`` replaces them or ``--no_overwrite`` skips their cases (unlike the
original, which replaced them silently).

A BratsUNet checkpoint brings its own network and preprocessing; the config then only lists the cases. An
original 3DUnetCNN checkpoint (bare weights) takes both from the config, as the original did.
"""

from __future__ import annotations

import argparse

from BratsUNetLib.cli.inference_arguments import add_inference_arguments
from BratsUNetLib.hardware.machine import add_machine_arguments, machine_settings

NAME = "predict"
HELP = "predict the cases of a config's file list (original predict.py flags), optionally with label maps"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config_filename", required=True, help="config (JSON) listing the cases in <group>_filenames")
    parser.add_argument("--model_filename", required=True, action="append",
                        help="checkpoint (.pth); give it several times to average models (e.g. cross-validation folds)")
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


def run(args: argparse.Namespace) -> int:
    import torch

    from BratsUNetLib.errors import BratsUNetError
    from BratsUNetLib.events import ProgressReporter
    from BratsUNetLib.inference.options import InferenceOptions
    from BratsUNetLib.inference.writing import predict_group

    if args.use_contours:
        raise BratsUNetError("--use_contours is for models trained with extra contour channels (the old "
                             "add_contours option), which BratsUNet does not support; leave it out.")
    if not args.segment:
        given = [flag for flag, value in (("--sum", args.sum), ("--threshold", args.threshold is not None),
                                          ("--labels", args.labels), ("--min-island-voxels", args.min_island_voxels))
                 if value]
        if given:
            raise BratsUNetError(f"{', '.join(given)} only change(s) the label maps; add --segment or leave "
                                 f"{'it' if len(given) == 1 else 'them'} out.")
    if args.overwrite and args.no_overwrite:
        raise BratsUNetError("--overwrite replaces existing outputs and --no_overwrite skips their cases; give one.")
    machine = machine_settings(args)
    threads, gpus = machine["n_workers"], machine["n_gpus"]
    if threads:  # 0 or absent: PyTorch's default (the original crashed on 0)
        torch.set_num_threads(threads)
    device = "cpu" if gpus == 0 and args.device == "auto" else args.device
    options = InferenceOptions(sliding_window=args.sliding_window, native=args.native, tta=args.tta,
                               backend=args.backend, activation=args.activation,
                               threshold=0.5 if args.threshold is None else args.threshold, scheme=args.labels,
                               min_island_voxels=args.min_island_voxels, sum_then_threshold=args.sum)
    reporter = ProgressReporter(args.progress)
    written = predict_group(args.config_filename, args.model_filename, args.group, args.output_directory,
                            options=options, segment=args.segment, overwrite=args.overwrite,
                            skip_existing=args.no_overwrite,
                            device=device, reporter=reporter)
    reporter.close()
    reporter.emit("result", output_directory=str(args.output_directory), cases=written)
    if reporter.mode != "json":
        print(f"Predicted {len(written)} case(s) into {args.output_directory}.")
    return 0
