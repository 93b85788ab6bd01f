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

import torch

from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.hardware.machine import machine_settings
from BratsUNetLib.inference.options import InferenceOptions
from BratsUNetLib.inference.writing import predict_group
from BratsUNetLib.models.store import resolve_model


def run(args: argparse.Namespace) -> int:

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
                               backend=args.backend, precision=args.precision, activation=args.activation,
                               threshold=0.5 if args.threshold is None else args.threshold, scheme=args.labels,
                               min_island_voxels=args.min_island_voxels, sum_then_threshold=args.sum)
    reporter = ProgressReporter(args.progress)
    # A model name becomes its checkpoint (downloaded when needed) once the plan of outputs has passed its checks.
    written = predict_group(args.config_filename, args.model_filename, args.group, args.output_directory,
                            options=options, segment=args.segment, overwrite=args.overwrite,
                            skip_existing=args.no_overwrite, device=device, reporter=reporter,
                            resolve_model=lambda model: resolve_model(model, reporter=reporter))
    reporter.close()
    reporter.emit("result", output_directory=str(args.output_directory), cases=written)
    if reporter.mode != "json":
        print(f"Predicted {len(written)} case(s) into {args.output_directory}.")
    return 0
