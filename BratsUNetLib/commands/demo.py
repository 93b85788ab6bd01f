"""``bratsunet demo``: the whole job on built-in synthetic data, ending with an HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path

from BratsUNetLib.errors import BratsUNetError

NAME = "demo"
HELP = ("generate synthetic BraTS cases, train a small network for a few minutes, segment and evaluate "
        "held-out cases, and write an HTML report")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="bratsunet-demo", help="folder for the cases, model and report "
                        "(default: ./bratsunet-demo)")
    parser.add_argument("--minutes", type=float, default=7.0, help="training time budget in minutes (default 7)")
    parser.add_argument("--cases", type=int, nargs=3, metavar=("TRAIN", "VALIDATION", "HELD_OUT"),
                        default=(16, 2, 4), help="number of training, validation and held-out cases (default 16 2 4)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), default=(240, 240, 155),
                        help="phantom grid in 1 mm voxels (default 240 240 155, as BraTS)")
    parser.add_argument("--network-shape", type=int, nargs=3, metavar=("X", "Y", "Z"), default=(64, 64, 64),
                        help="network input: each case is cropped to the brain and resized to this (default 64³)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cohort and of the training (default 0)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default auto)")


def run(args: argparse.Namespace) -> int:
    from BratsUNetLib.demo import DemoSettings, run_demo
    from BratsUNetLib.events import ProgressReporter

    n_training, n_validation, n_held_out = args.cases
    if args.minutes <= 0:
        raise BratsUNetError(f"--minutes must be positive, got {args.minutes:g}.")
    if n_training < 1 or n_validation < 0 or n_held_out < 1:
        raise BratsUNetError("--cases needs at least 1 training and 1 held-out case (validation may be 0).")
    reporter = ProgressReporter(args.progress)
    page = run_demo(DemoSettings(output=Path(args.output), minutes=args.minutes, n_training=n_training,
                                 n_validation=n_validation, n_held_out=n_held_out, case_shape=args.shape,
                                 network_shape=args.network_shape, seed=args.seed, device=args.device), reporter)
    reporter.emit("result", report=str(page.resolve()))
    reporter.close()
    if args.progress != "json":
        print(f"Report: {page.resolve()}")
    return 0
