#!/usr/bin/env python3
"""Dice per region after 0, 1, 2, 3, 5 and 10 simulated clicks, for a guided model trained within a CPU budget.

    python benchmarks/bench_clicks.py              # 96×96×64 phantoms, 16 training cases, 12 minutes of training
    python benchmarks/bench_clicks.py --quick      # 64×64×48, 4 cases, 1 minute (checks that the script works)

A guided DynUNet (4 levels, filters 8-16-32-64, 13 inputs) is trained with simulated clicks (``training/guided.py``)
on phantoms of seeds 0..N-1, validated on seed 500, then evaluated on held-out phantoms (seeds 1000 and up,
never seen): the automatic segmentation (0 clicks), then one click at a time, each placed by the click simulator
(``BratsUNetLib.guidance.next_click``, deterministic: the largest error of the current segmentation against the
reference, at its innermost voxel, in the region whose error it is); each click refines the previous result with
every click so far, as the Slicer panel does with its point lists.
Reported: mean Dice per region (BraTS conventions, ``evaluation/metrics``) after each number of clicks, the
gain after 5 clicks on the cases whose automatic Dice is below 0.85, and the largest fall of a region's mean Dice
after a click. Results: benchmarks/results/clicks[-quick].json and a plot clicks[-quick].png.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import benchlib

REGIONS = ("WT", "TC", "ET")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--minutes", type=float, help="training budget (default 12, quick 1)")
    parser.add_argument("--test-cases", type=int, help="held-out phantoms (default 6, quick 2)")
    parser.add_argument("--model", type=Path, help="a guided model trained earlier (--save-model): no training")
    parser.add_argument("--save-model", type=Path, help="keep the trained guided model in this file")
    args = parser.parse_args(argv)
    if args.save_model is not None and args.save_model.exists():
        parser.error(f"--save-model {args.save_model} exists; give a new file name.")
    quick = args.quick
    shape = (64, 64, 48) if quick else (96, 96, 64)
    n_train = 4 if quick else 16
    n_test = args.test_cases or (2 if quick else 6)
    minutes = args.minutes or (1.0 if quick else 12.0)

    from BratsUNetLib.config.brats import guided_training_config
    from BratsUNetLib.data.images import read_case
    from BratsUNetLib.evaluation.click_curve import CLICK_COUNTS, click_curve
    from BratsUNetLib.evaluation.report import plot_click_curve
    from BratsUNetLib.inference.loaded_model import load_models
    from BratsUNetLib.inference.pipeline import segment_case
    from BratsUNetLib.phantoms.generate import MODALITIES, generate_case, write_case
    from BratsUNetLib.training.loop import train
    from BratsUNetLib.training.settings import TrainingSettings

    with tempfile.TemporaryDirectory(prefix="bench-clicks-") as folder:
        folder = Path(folder)

        def entry(seed: int) -> dict:
            paths = write_case(generate_case(shape, seed=seed), folder / "cases", f"C{seed}")
            return {"image": [str(paths[m]) for m in MODALITIES], "label": str(paths["seg"])}

        training_seconds = None
        model_path = args.model
        if model_path is None:
            config = guided_training_config([entry(s) for s in range(n_train)], [entry(500)],
                                            patch=32 if quick else 48)
            started = time.perf_counter()
            train(config, folder / "run", settings=TrainingSettings(device="cpu", seed=1, n_workers=0,
                                                                  max_seconds=minutes * 60))
            training_seconds = time.perf_counter() - started
            model_path = folder / "run" / "model_best.pth"
            if args.save_model:
                shutil.copyfile(model_path, args.save_model)
        [model] = load_models([model_path], device="cpu")

        cases = {}
        for seed in range(1000, 1000 + n_test):
            phantom = generate_case(shape, seed=seed)
            paths = write_case(phantom, folder / "test", f"T{seed}")
            automatic = segment_case({m: paths[m] for m in MODALITIES}, [model]).labels
            image, affine = read_case([paths[m] for m in MODALITIES])
            cases[f"T{seed}"] = (image, affine, automatic, phantom.label)
        curve = click_curve(model, cases)

    mean, gains, falls = curve.mean(), curve.gain(), curve.largest_fall()
    payload = {"machine": benchlib.machine(), "versions": benchlib.versions(), "case_shape": list(shape),
               "training_cases": n_train, "test_cases": n_test, "training_seconds": training_seconds,
               "model": str(args.model) if args.model else None, **curve.as_dict()}
    path = benchlib.write_results("clicks", payload, quick)
    plot_click_curve(curve, path.with_suffix(".png"))
    trained = f"trained {training_seconds / 60:.1f} min" if training_seconds else f"model {args.model}"
    print(f"{trained}; mean Dice after {list(CLICK_COUNTS)} clicks:")
    for region in REGIONS:
        print(f"  {region}: " + " ".join(f"{value:.3f}" for value in mean[region])
              + f"  (gain after 5 where automatic < 0.85: {gains[region]})")
    print(f"largest fall of a mean after a click: {falls}; {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
