"""The end-to-end demo on built-in data: synthetic cohort -> training -> segmentation -> evaluation -> report.

Everything a user needs to see what BratsUNet does, in minutes on a laptop CPU, with no data to download:
phantom BraTS cases (:mod:`BratsUNetLib.phantoms.generate`) are split into training, validation and held-out cases; a small
DynUNet is trained for a fixed wall-clock budget; the held-out cases are segmented at full resolution and scored
with the BraTS 2020 metrics; the report (HTML + PNGs) shows the table, the curves and the slices. The trained model
is an ordinary BratsUNet checkpoint that ``bratsunet segment`` and the Slicer module accept.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from BratsUNetLib.config.brats import brats_training_config
from BratsUNetLib.errors import BratsUNetError, ConfigError
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.fileio import write_text_atomic
from BratsUNetLib.phantoms.generate import BRATS_SHAPE, CASE_ID_FORMAT, MIN_SIZE, MODALITIES, check_memory, check_shape
from BratsUNetLib.hardware.devices import resolve_device
from BratsUNetLib.training.setup import check_training_config
from BratsUNetLib.data import images as imageio
from BratsUNetLib.inference.loaded_model import load_models
from BratsUNetLib.inference.pipeline import segment_case
from BratsUNetLib.inference.writing import write_result
from BratsUNetLib.evaluation import metrics, report
from BratsUNetLib.phantoms import generate as phantom
from BratsUNetLib.training.loop import train
from BratsUNetLib.training.settings import TrainingSettings

# What the demo writes into its --output folder: the only names --overwrite replaces there.
OUTPUT_ENTRIES = ("cases", "demo_config.json", "training", "predictions", "report")


@dataclass
class DemoSettings:
    """The demo's size. The defaults reach held-out WT Dice above 0.8 in about 9 minutes on 2 CPU cores (benchmarks/README.md)."""

    output: Path
    minutes: float = 7.0  # training budget (wall clock); the whole demo takes about 2 minutes more
    n_training: int = 16
    n_validation: int = 2
    n_held_out: int = 4
    case_shape: Sequence[int] = BRATS_SHAPE  # phantom grid, 1 mm voxels
    network_shape: Sequence[int] = (64, 64, 64)  # each case is cropped to the brain and resized to this
    filters: Sequence[int] = (8, 16, 32, 64, 128)
    seed: int = 0
    device: str = "auto"


def demo_config(settings: DemoSettings, case_dirs: Sequence[Path]) -> dict:
    """An original-format 3DUnetCNN config for the demo cohort (written beside the results for reuse)."""
    levels = len(settings.filters)

    def case_entry(case_dir: Path) -> dict:
        return {"image": [str(case_dir / f"{case_dir.name}_{m}.nii.gz") for m in MODALITIES],
                "label": str(case_dir / f"{case_dir.name}_seg.nii.gz")}

    n_train, n_val = settings.n_training, settings.n_validation
    model = {"name": "DynUNet", "spatial_dims": 3, "in_channels": len(MODALITIES), "out_channels": 3,
             "filters": list(settings.filters), "kernel_size": [3] * levels,
             "strides": [1] + [2] * (levels - 1), "upsample_kernel_size": [2] * (levels - 1),
             "deep_supervision": False}
    return brats_training_config(
        model, settings.network_shape,
        {"batch_size": 2, "validation_batch_size": 2, "n_epochs": 1000, "save_best": True, "amp": True},
        [case_entry(d) for d in case_dirs[:n_train]], [case_entry(d) for d in case_dirs[n_train:n_train + n_val]],
        # Dice + cross-entropy: the cross-entropy term gives useful gradients from the first steps, which a
        # few-minute training needs (Dice alone, the original's loss, starts much more slowly).
        learning_rate=0.003, loss="DiceCELoss", scheduler_patience=8, min_lr=1e-5,
        spatial_augmentations=[{"name": "RandFlipd", "prob": 0.5, "spatial_axis": 0}])


def _is_count(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _shape_text(shape: Sequence) -> str:
    return " ".join(str(n) for n in shape)


def check_settings(settings: DemoSettings, overwrite: bool = False) -> None:
    """Every setting of the demo, checked before anything is written; BratsUNetError (one line, naming the
    command-line flag) at the first that is wrong.

    The numbers (budget, case counts, seed, shapes) and the device; the network's input shape against the
    network's downsampling; the memory of a phantom and of training (the demo's config passes the checks of
    ``bratsunet train``); and, unless ``overwrite``, that no earlier demo's results are in ``settings.output``.
    """

    minutes = settings.minutes
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not math.isfinite(minutes) \
            or minutes <= 0:
        raise BratsUNetError(f"--minutes must be positive: give the training budget in minutes, e.g. 7; got {minutes}.")
    if not (_is_count(settings.n_training, 1) and _is_count(settings.n_validation, 0)
            and _is_count(settings.n_held_out, 1)):
        raise BratsUNetError("--cases needs at least 1 training and 1 held-out case (validation may be 0), e.g. "
                             "--cases 16 2 4.")
    if not _is_count(settings.seed, 0):
        raise BratsUNetError(f"--seed must be a whole number of 0 or more, got {settings.seed}.")
    if len(settings.case_shape) != 3 or not all(_is_count(n, MIN_SIZE) for n in settings.case_shape):
        raise BratsUNetError(f"--shape {_shape_text(settings.case_shape)} is not usable: give one or three voxel "
                             f"counts of at least {MIN_SIZE}, e.g. 240 240 155.")
    factor = 2 ** (len(settings.filters) - 1)  # every level below the top halves each axis
    shape = settings.network_shape
    if len(shape) != 3:
        raise BratsUNetError(f"--network-shape {_shape_text(shape)}: give one edge (a cube) or three, e.g. 64 or "
                             f"64 64 64.")
    if all(n == factor for n in shape):
        raise BratsUNetError(f"--network-shape {_shape_text(shape)} leaves a single voxel at the deepest of the "
                             f"network's {len(settings.filters)} levels, too little to train on; give at least "
                             f"{2 * factor}, e.g. 64.")
    if not all(_is_count(n, 1) and n % factor == 0 for n in shape):
        nearest = [max(factor, (n + factor // 2) // factor * factor) if _is_count(n, 1) else factor for n in shape]
        raise BratsUNetError(f"--network-shape {_shape_text(shape)} cannot pass through the demo's network: its "
                             f"{len(settings.filters)} levels halve each axis {len(settings.filters) - 1} times, so "
                             f"give one or three multiples of {factor}, e.g. {_shape_text(nearest)}.")
    resolve_device(settings.device)
    check_memory(check_shape(settings.case_shape))
    output = Path(settings.output)
    if output.exists() and not output.is_dir():
        raise BratsUNetError(f"--output '{output}' is a file; give a folder for the demo's cases, model and report.")
    n_cases = settings.n_training + settings.n_validation + settings.n_held_out
    placeholders = [output / "cases" / CASE_ID_FORMAT.format(i) for i in range(1, n_cases + 1)]
    try:
        check_training_config(demo_config(settings, placeholders), device=resolve_device(settings.device))
    except ConfigError as exc:  # named after the demo's flags: the user wrote no config
        raise BratsUNetError(f"--network-shape {_shape_text(shape)}: the demo's network cannot be trained here: "
                             f"{exc}") from None
    existing = [name for name in OUTPUT_ENTRIES if (output / name).exists()]
    if existing and not overwrite:
        raise BratsUNetError(f"--output '{output}' holds the results of an earlier demo ({', '.join(existing)}); "
                             f"pass --overwrite to replace them, or choose another --output.")


def run_demo(settings: DemoSettings, reporter: ProgressReporter, overwrite: bool = False) -> Path:
    """Run the whole demo into ``settings.output`` and return the path of the HTML report.

    :func:`check_settings` runs first, so a wrong setting writes nothing. With ``overwrite`` an earlier demo's
    results in the folder are replaced (its training folder is removed, so the new run starts afresh).
    """

    check_settings(settings, overwrite)
    output = Path(settings.output)
    if overwrite and (output / "training").is_dir():
        shutil.rmtree(output / "training")  # a run left there would be resumed, not replaced
    n_cases = settings.n_training + settings.n_validation + settings.n_held_out
    reporter.message(f"1/4 Generating {n_cases} synthetic BraTS cases in {output / 'cases'}")
    case_dirs = phantom.generate_cohort(output / "cases", n_cases, settings.case_shape, settings.seed,
                                        progress=reporter, overwrite=overwrite)
    config = demo_config(settings, case_dirs)
    config_path = write_text_atomic(output / "demo_config.json", json.dumps(config, indent=2))

    reporter.message(f"2/4 Training a {len(settings.filters)}-level DynUNet for "
                     f"{settings.minutes:g} minutes on {settings.n_training} cases")
    result = train(config_path, output / "training", reporter=reporter,
                   settings=TrainingSettings(device=settings.device, seed=settings.seed,
                                             max_seconds=settings.minutes * 60,
                                             resume_hint=f"run the demo again with --output {output}"))
    model_path = result.best_model or result.model

    held_out = case_dirs[settings.n_training + settings.n_validation:]
    reporter.message(f"3/4 Segmenting and evaluating {len(held_out)} held-out cases")
    models = load_models([model_path], device=settings.device)
    case_metrics, slice_pngs = {}, {}
    reporter.start("held-out cases", len(held_out))
    for done, case_dir in enumerate(held_out, start=1):
        case_id = case_dir.name
        paths = {m: case_dir / f"{case_id}_{m}.nii.gz" for m in MODALITIES}
        segmentation = segment_case(paths, models)
        write_result(segmentation, output / "predictions" / f"{case_id}.nii.gz")
        reference = imageio.read_label(case_dir / f"{case_id}_seg.nii.gz", segmentation.labels.shape,
                                       segmentation.affine)
        case_metrics[case_id] = metrics.region_metrics(segmentation.labels, reference,
                                                       imageio.voxel_spacing(segmentation.affine))
        flair, t1ce = (imageio.read_image(paths[m]).array for m in ("flair", "t1ce"))
        slice_pngs[case_id] = report.write_case_slices(
            output / "report" / f"{case_id}.png", {"FLAIR": flair, "T1ce": t1ce}, reference, segmentation.labels,
            segmentation.affine, title=case_id)
        reporter.advance("held-out cases", done, len(held_out))

    reporter.message("4/4 Writing the report")
    curves = report.plot_training_curves(result.work_dir / "training_log.csv", output / "report" / "training_curves.png")
    mean = metrics.mean_metrics(list(case_metrics.values()))
    write_text_atomic(output / "report" / "metrics.json",
                      json.dumps({"cases": case_metrics, "mean": mean, "model": str(model_path),
                                  "epochs": result.epochs}, indent=2))
    notes = [f"Model: {model_path} ({result.epochs} epochs on {settings.n_training} synthetic cases, "
             f"{settings.minutes:g} minutes).",
             "Segment your own case with: bratsunet segment --model " + str(model_path) +
             " --flair F --t1 F --t1ce F --t2 F --output labels.nii.gz"]
    page = report.write_html_report(output / "report" / "index.html", case_metrics, curves_png=curves,
                                    slice_pngs=slice_pngs, title="BratsUNet demo on synthetic BraTS cases",
                                    notes=notes)
    for region, values in mean.items():
        reporter.message(f"Held-out mean {region}: Dice {values['dice']:.3f}, HD95 {values['hd95']:.1f} mm")
    return page
