"""``bratsunet segment``: one case (FLAIR, T1, T1ce, T2) to a BraTS label map on the first input's grid."""

from __future__ import annotations

import argparse
from pathlib import Path

from BratsUNetLib.cli.arguments.segment import CHANNEL_FLAGS
from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.fileio import check_not_inputs, check_output_path, finish_interrupted_writes, same_file
from BratsUNetLib.inference.loaded_model import load_models
from BratsUNetLib.inference.options import InferenceOptions
from BratsUNetLib.inference.pipeline import segment_case
from BratsUNetLib.inference.writing import write_result
from BratsUNetLib.models.checkpoint import FORMAT, model_card
from BratsUNetLib.models.store import resolve_model


NIFTI_SUFFIXES = (".nii", ".nii.gz")


def check_nifti_output(path: str, overwrite: bool, flag: str) -> Path:
    """An output path that can be written: a NIfTI name, not a folder, not an existing file unless ``overwrite``."""
    checked = check_output_path(path)
    if not str(checked).lower().endswith(NIFTI_SUFFIXES):
        raise BratsUNetError(f"{flag} '{path}' must be a NIfTI file name ending in .nii.gz or .nii.")
    if checked.exists() and not overwrite:
        raise BratsUNetError(f"{flag} '{path}' exists; pass --overwrite to replace it.")
    return checked


def run(args: argparse.Namespace) -> int:
    reporter = ProgressReporter(args.progress)
    say = reporter.message if reporter.mode == "json" else print
    images = {dest: getattr(args, dest) for dest, *_ in CHANNEL_FLAGS if getattr(args, dest)}
    # An input is never an output, whatever --overwrite says: checked before anything else is looked at.
    flags = {dest: flag for dest, flag, *_ in CHANNEL_FLAGS}
    inputs = [(flags[dest], path) for dest, path in images.items()]
    inputs += [("--model", path) for path in args.model] + [("--config", args.config)]
    check_not_inputs({"--output": args.output, "--probabilities": args.probabilities}, inputs)
    if args.probabilities and same_file(args.output, args.probabilities):
        raise BratsUNetError("--output and --probabilities name the same file; give two file names.")
    # A run stopped between writing the label map and the probabilities is finished first.
    folders = [Path(path).parent for path in (args.output, args.probabilities) if path]
    for message in finish_interrupted_writes(folders):
        say(message)
    output = check_nifti_output(args.output, args.overwrite, "--output")
    probabilities = None
    if args.probabilities:
        probabilities = check_nifti_output(args.probabilities, args.overwrite, "--probabilities")
    if not images:
        raise BratsUNetError("No input image given; pass --flair, --t1, --t1ce and --t2 "
                             "(or --t2f, --t1n, --t1c, --t2w).")
    options = InferenceOptions(sliding_window=args.sliding_window, native=args.native, tta=args.tta,
                               threshold=args.threshold, scheme=args.labels, min_island_voxels=args.min_island_voxels,
                               backend=args.backend, precision=args.precision)
    # A model name (``bratsunet models list``) becomes its checkpoint, downloaded when needed: only once every
    # other argument is known to be right, so that a mistake there costs no download. (Outputs are NIfTI files,
    # so they cannot be a model's checkpoint, which the input check above therefore need not know by its path.)
    args.model = [str(resolve_model(model, reporter=reporter)) for model in args.model]
    models = load_models(args.model, config=args.config, device=args.device)
    for model in models:
        say(model_card(model.description))
    if args.config and all(model.description.get("format") == FORMAT for model in models):
        say("--config is not used: BratsUNet checkpoints carry their own config.")
    unused = sorted(set(images) - set(models[0].channels))
    if unused:
        say(f"Not used by the model: {', '.join(unused)}.")
    result = segment_case(images, models, options, reporter)
    written = write_result(result, output, probabilities)
    reporter.close()
    reporter.emit("result", outputs=written, volumes_ml=result.volumes_ml, strategy=result.strategy,
                  backend=result.backend)
    if reporter.mode != "json":
        print(f"Inference: {result.strategy}; backend {result.backend}.")
        print(f"Label map: {output}" + (f"; probabilities: {probabilities}" if probabilities else ""))
        print("Volumes (mL): " + ", ".join(f"{name} {value:.2f}" for name, value in result.volumes_ml.items()))
    return 0
