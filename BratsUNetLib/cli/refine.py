"""``bratsunet refine``: a segmentation corrected by clicks, recomputed by a guided model around them."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from BratsUNetLib.cli.arguments.segment import CHANNEL_FLAGS
from BratsUNetLib.cli.segment import check_nifti_output
from BratsUNetLib.data.images import read_case, read_label_image, write_image
from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.fileio import check_not_inputs
from BratsUNetLib.guidance import parse_click
from BratsUNetLib.inference.loaded_model import LoadedModel, load_models
from BratsUNetLib.inference.options import InferenceOptions
from BratsUNetLib.inference.postprocessing import label_volumes_ml
from BratsUNetLib.inference.refinement import PreparedImages, check_guided, prepare, refine
from BratsUNetLib.models.store import resolve_model

# How far apart the segmentation's grid and the first image's may be (mm, in the affine) and still be the same.
GRID_TOLERANCE_MM = 1e-3

# The last case's images, read and prepared for its model, by (model, each file's path, size and modification
# time). The Slicer worker runs one refine per click on the same files: they are read and prepared once.
_last_case: dict[tuple, tuple[np.ndarray, PreparedImages]] = {}


def _prepared_case(model: LoadedModel, paths: list[str]) -> tuple[np.ndarray, PreparedImages]:
    """The reference affine and :func:`prepare`'s result for the images at ``paths`` (the model's channels)."""
    try:
        stats = [Path(path).stat() for path in paths]
    except OSError:  # read_case says what is wrong with the file, in one line
        image, affine = read_case(paths)
        return affine, prepare(model, image, affine)
    key = (id(model), str(model.path), *((str(Path(p).resolve()), s.st_size, s.st_mtime_ns)
                                        for p, s in zip(paths, stats)))
    if key not in _last_case:
        image, affine = read_case(paths)
        _last_case.clear()
        _last_case[key] = (affine, prepare(model, image, affine))
    return _last_case[key]


def run(args: argparse.Namespace) -> int:
    reporter = ProgressReporter(args.progress)
    images = {dest: getattr(args, dest) for dest, *_ in CHANNEL_FLAGS if getattr(args, dest)}
    flags = {dest: flag for dest, flag, *_ in CHANNEL_FLAGS}
    inputs = [(flags[dest], path) for dest, path in images.items()]
    inputs += [("--model", args.model), ("--segmentation", args.segmentation)]
    check_not_inputs({"--output": args.output}, inputs)  # even with --overwrite
    output = check_nifti_output(args.output, args.overwrite, "--output")
    clicks = [parse_click(text, True) for text in args.add] + [parse_click(text, False) for text in args.remove]
    if not clicks:
        raise BratsUNetError("No click given; add a point with --add R,A,S[:REGION] or --remove R,A,S[:REGION].")
    options = InferenceOptions(scheme=args.labels, backend=args.backend)
    [model] = load_models([str(resolve_model(args.model, reporter=reporter))], device=args.device)
    check_guided(model)
    missing = [flags[name] for name in model.channels if name not in images]
    if missing:
        raise BratsUNetError(f"The model takes {', '.join(model.channels)}; give {', '.join(missing)} too.")
    affine, prepared = _prepared_case(model, [images[name] for name in model.channels])
    segmentation = read_label_image(args.segmentation)
    if segmentation.shape != prepared.source_shape or abs(segmentation.affine - affine).max() > GRID_TOLERANCE_MM:
        raise BratsUNetError(f"--segmentation '{args.segmentation}' is not on the grid of "
                             f"{flags[model.channels[0]]} '{images[model.channels[0]]}'; give the segmentation "
                             "that was made for these images.")
    result = refine(model, prepared, affine, segmentation.array, clicks, options)
    write_image(output, result.labels, affine, dtype=np.uint8)
    volumes = label_volumes_ml(result.labels, affine, model.dataset, options)
    reporter.emit("result", outputs={"labels": str(output)}, volumes_ml=volumes,
                  box=[[s.start, s.stop] for s in result.box])
    reporter.close()
    if reporter.mode != "json":
        print(f"Recomputed voxels {' x '.join(f'{s.start}:{s.stop}' for s in result.box)} for {len(clicks)} "
              f"click(s); label map: {output}")
        print("Volumes (mL): " + ", ".join(f"{name} {value:.2f}" for name, value in volumes.items()))
    return 0
