#!/usr/bin/env python3
"""The Slicer panel's path against the command line on the same case, same run.

    python benchmarks/bench_panel.py           # BraTS 2020 DynUNet (128³ input), 240×240×155 phantom, 3 rounds
    python benchmarks/bench_panel.py --quick   # small DynUNet, 96×96×64 phantom, 1 round

- ``command line``: ``bratsunet segment`` as a fresh process per run (start-up, imports and exit included), with
  the case's four NIfTI files.
- ``panel``: :meth:`BratsUNetLogic.segment` on volumes in a real slicer-core scene (the Slicer module as the
  console calls it, with the desktop-only pieces stood in as in ``Testing/slicer``): exporting the volumes, the
  job in the module's worker process, importing the segmentation and the volumes table. The first call starts the
  worker (``cold``); later calls find it running (``warm``), as every Apply after the first in a Slicer session.

Both use ``--backend auto`` (the panel passes no backend: the worker's default is the command line's) and the
``--precision`` given here (the panel's Precision choice; default fp32). Reported: median wall time of each, and
warm panel / command line. Results: benchmarks/results/panel[-PRECISION][-quick].json (no suffix for fp32).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
from pathlib import Path

import benchlib

ROOT = Path(__file__).resolve().parents[1]
CASE_ID = "BraTS20_Panel_001"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small network, small case, one round")
    parser.add_argument("--repeats", type=int, help="rounds (default 3, quick 1)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32",
                        help="the --precision of both paths (default fp32)")
    args = parser.parse_args(argv)
    args.network = "small" if args.quick else "brats"
    args.case_shape = (96, 96, 64) if args.quick else (240, 240, 155)
    args.desired_shape = 96 if args.quick else 128
    args.repeats = args.repeats or (1 if args.quick else 3)
    return args


def setup(work: Path, args: argparse.Namespace) -> dict:
    """The phantom case and a seeded BratsUNet checkpoint (self-describing, as the panel takes it)."""
    from BratsUNetLib.models.checkpoint import save_checkpoint
    from BratsUNetLib.phantoms.generate import MODALITIES, generate_case, write_case

    paths = write_case(generate_case(args.case_shape, seed=0), work / "case", CASE_ID)
    config = benchlib.benchmark_config(args.network, desired_shape=[args.desired_shape] * 3)
    model = save_checkpoint(work / "model.pth", benchlib.seeded_network(config["model"]), config=config,
                            channels=MODALITIES)
    return {"images": {name: str(paths[name]) for name in MODALITIES}, "model": str(model)}


def command_line_run(work: Path, files: dict, index: int, precision: str) -> float:
    argv = [benchlib.python(), "-m", "BratsUNetLib", "segment", "--model", files["model"],
            "--output", work / f"labels-cli-{index}.nii.gz", "--progress", "none", "--overwrite",
            *(["--precision", precision] if precision != "fp32" else [])]
    for name, path in files["images"].items():
        argv += [f"--{name}", path]
    return benchlib.run_measured(argv)["wall_s"]


def panel_logic():
    """The module's logic on a fresh slicer-core scene, imported as Testing/slicer imports it."""
    sys.path[:0] = [str(ROOT / "Testing" / "slicer"), str(ROOT / "BratsUNet")]
    import standins

    standins.install()
    standins.new_scene()
    module = importlib.import_module("BratsUNet")
    return module


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-panel-") as folder:
        work = Path(folder)
        files = setup(work, args)
        module = panel_logic()
        from BratsUNetSlicer import scene_io

        volumes = {name: scene_io.load_volume(path, f"{CASE_ID}_{name}") for name, path in files["images"].items()}
        logic = module.BratsUNetLogic()
        try:
            # Untimed: fills the export cache (int8: quantizes) and the file cache for both paths.
            command_line_run(work, files, -1, args.precision)
            panel, cli = [], []
            for index in range(args.repeats + 1):  # the panel's first run is its cold one
                start = time.perf_counter()
                logic.segment(**volumes, model=files["model"], device="cpu", wait=True,
                              precision="" if args.precision == "fp32" else args.precision)
                panel.append(time.perf_counter() - start)
                if index < args.repeats:
                    cli.append(command_line_run(work, files, index, args.precision))
        finally:
            logic.worker.close()
    warm, line = benchlib.median(panel[1:]), benchlib.median(cli)
    payload = {"machine": benchlib.machine(), "versions": benchlib.versions(), "network": args.network,
               "case_shape": list(args.case_shape), "desired_shape": args.desired_shape,
               "precision": args.precision, "panel_cold_s": panel[0], "panel_warm_s": panel[1:], "command_line_s": cli,
               "panel_warm_median_s": warm, "command_line_median_s": line,
               "warm_panel_over_command_line": warm / line if warm and line else None}
    name = "panel" if args.precision == "fp32" else f"panel-{args.precision}"
    path = benchlib.write_results(name, payload, args.quick)
    print(json.dumps({key: payload[key] for key in ("panel_cold_s", "panel_warm_median_s", "command_line_median_s",
                                                     "warm_panel_over_command_line")}, indent=1))
    print(f"Results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
