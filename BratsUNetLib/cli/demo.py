"""``bratsunet demo``: the whole job on built-in synthetic data, ending with an HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path

from BratsUNetLib.demo.run import DemoSettings, run_demo
from BratsUNetLib.events import ProgressReporter


def _three(values: list[int]) -> list[int]:
    """``--shape 64`` means 64 64 64; other counts are left for the demo's check to refuse."""
    return values * 3 if len(values) == 1 else values


def run(args: argparse.Namespace) -> int:
    n_training, n_validation, n_held_out = args.cases
    settings = DemoSettings(output=Path(args.output), minutes=args.minutes, n_training=n_training,
                            n_validation=n_validation, n_held_out=n_held_out, case_shape=_three(args.shape),
                            network_shape=_three(args.network_shape), seed=args.seed, device=args.device)
    reporter = ProgressReporter(args.progress)
    page = run_demo(settings, reporter, overwrite=args.overwrite)
    reporter.emit("result", report=str(page.resolve()))
    reporter.close()
    if args.progress != "json":
        print(f"Report: {page.resolve()}")
    return 0
