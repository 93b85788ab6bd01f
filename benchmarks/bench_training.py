#!/usr/bin/env python3
"""Training throughput on the CPU: seconds per step, samples per second and the share of time waiting for data.

    python benchmarks/bench_training.py            # tiny DynUNet, 4 phantom cases of 64³, 3 measured epochs
    python benchmarks/bench_training.py --quick    # 2 cases, 1 measured epoch, workers 0 and 2 only

Each variant (data-loading worker processes ``--nthreads`` × preprocessing cache) trains in a fresh child
process through :func:`BratsUNetLib.training.loop.train`, exactly as ``bratsunet train`` does: one warm-up epoch
(thread pools, oneDNN kernels, worker start-up), then the run is resumed for the measured epochs, whose timing
comes from the training loop itself: time per step (from the end of one step to the end of the next, so data
waiting included), and the part of it spent waiting for the next batch. The pipeline has per-sample work to
overlap: random flips, a random affine (rotation + scaling) on image and label, and an intensity scaling.
Results: benchmarks/results/training[-quick].json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import benchlib

VARIANTS = ("0:memory", "2:memory", "0:none", "2:none")
QUICK_VARIANTS = ("0:memory", "2:memory")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 cases, 1 measured epoch, two variants")
    parser.add_argument("--network", choices=sorted(benchlib.NETWORK_FILTERS), default="tiny",
                        help="DynUNet size (default tiny: filters 8-64, 351 k parameters)")
    parser.add_argument("--shape", type=int, default=64, help="edge of the cubic phantoms and network input")
    parser.add_argument("--cases", type=int, help="training cases (default 4, quick 2)")
    parser.add_argument("--epochs", type=int, help="measured epochs after the warm-up one (default 3, quick 1)")
    parser.add_argument("--variants", help=f"comma-separated workers:cache pairs (default {','.join(VARIANTS)})")
    parser.add_argument("--child", nargs=3, metavar=("CONFIG", "WORKDIR", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.cases = args.cases or (2 if args.quick else 4)
    args.epochs = args.epochs or (1 if args.quick else 3)
    args.variants = args.variants.split(",") if args.variants else list(QUICK_VARIANTS if args.quick else VARIANTS)
    return args


def make_config(args: argparse.Namespace, folder: Path) -> dict:
    """Phantom cases on disk and a config training ``args.network`` on them (64³ inputs, augmentations)."""
    from BratsUNetLib.phantoms.generate import MODALITIES, generate_case, write_case

    shape = (args.shape,) * 3
    entries = []
    for index in range(args.cases):
        paths = write_case(generate_case(shape, seed=(7, index)), folder, f"Bench_{index:03d}")
        entries.append({"image": [str(paths[m]) for m in MODALITIES], "label": str(paths["seg"])})
    config = benchlib.benchmark_config(args.network, desired_shape=list(shape), spatial_augmentations=[
        {"name": "RandFlipd", "prob": 0.5, "spatial_axis": [0, 1, 2]},
        {"name": "RandAffined", "prob": 1.0, "rotate_range": [0.2, 0.2, 0.2], "scale_range": [0.1, 0.1, 0.1],
         "padding_mode": "zeros"}],
        intensity_augmentations=[{"name": "RandScaleIntensityd", "factors": 0.1, "prob": 1.0}])
    config["training"].update(batch_size=1, n_epochs=1, test_input=0)
    config["training_filenames"] = entries
    return config


def child(config_path: str, work_dir: str, variant: str) -> None:
    """Train one variant: a warm-up epoch, then resume for the measured epochs; print the timing as JSON."""
    from BratsUNetLib.training.loop import train
    from BratsUNetLib.training.settings import TrainingSettings

    workers, cache = variant.split(":")
    config = json.loads(Path(config_path).read_text())
    measured = config["training"].pop("measured_epochs")
    settings = TrainingSettings(device="cpu", seed=0, n_workers=int(workers), cache=cache)
    start = time.perf_counter()
    train(config, work_dir, settings=settings)
    warm_up = time.perf_counter() - start
    config["training"]["n_epochs"] = 1 + measured
    start = time.perf_counter()
    result = train(config, work_dir, settings=settings)
    timing = result.timing
    steady_steps = timing["steps"] - 1
    steady_step = timing["step_seconds"] - timing["first_step_seconds"]
    steady_wait = timing["data_wait_seconds"] - timing["first_data_wait_seconds"]
    print(json.dumps({
        "variant": variant, "workers": int(workers), "cache": cache, "warm_up_run_s": warm_up,
        "measured_run_s": time.perf_counter() - start, "steps": timing["steps"],
        # Steady state: the run's first step, which waits for the worker processes to start, is left out and
        # reported on its own (it happens once per run, however long the run).
        "first_step_s": timing["first_step_seconds"], "first_data_wait_s": timing["first_data_wait_seconds"],
        "seconds_per_step": steady_step / steady_steps,
        "samples_per_second": config["training"]["batch_size"] * steady_steps / steady_step,
        "data_wait_share": steady_wait / steady_step,
        "data_wait_seconds_per_step": steady_wait / steady_steps,
        "peak_rss_mb": benchlib.own_peak_rss_mb(),  # the training process (worker processes not included)
    }))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    import torch

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_training-") as temp:
        temp = Path(temp)
        config = make_config(args, temp / "data")
        config["training"]["measured_epochs"] = args.epochs
        config_path = temp / "bench.json"
        config_path.write_text(json.dumps(config))
        for variant in args.variants:
            print(f"training with workers:cache {variant} ...", file=sys.stderr, flush=True)
            measured = benchlib.run_measured([benchlib.python(), __file__, "--child", config_path,
                                              temp / f"work-{variant.replace(':', '-')}", variant])
            row = benchlib.last_json_line(measured["stdout"])
            rows.append(row)
            print(f"  {benchlib.fmt(row['seconds_per_step'])} s/step, {benchlib.fmt(row['samples_per_second'])} "
                  f"samples/s, waiting for data {row['data_wait_share']:.0%}", file=sys.stderr, flush=True)
    from BratsUNetLib.models.networks import build_network, count_parameters

    payload = {
        "benchmark": "training", "machine": benchlib.machine(),
        "setup": {"network": args.network, "parameters": count_parameters(build_network(config["model"])),
                  "input": [1, 4, args.shape, args.shape, args.shape], "cases": args.cases,
                  "measured_epochs": args.epochs, "batch_size": 1, "torch_threads": torch.get_num_threads(),
                  "augmentations": "RandFlipd, RandAffined (image + label), RandScaleIntensityd"},
        "results": rows,
    }
    path = benchlib.write_results("training", payload, args.quick)
    print(table(rows))
    print(f"results: {path}")
    return 0


def table(rows: list[dict]) -> str:
    """The results as a Markdown table (as pasted into benchmarks/README.md)."""
    lines = ["| workers | cache | s / step | samples / s | waiting for data | first step of the run (s) | "
             "peak RSS of the trainer (MB) |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['workers']} | {row['cache']} | {benchlib.fmt(row['seconds_per_step'])} | "
                     f"{benchlib.fmt(row['samples_per_second'])} | {row['data_wait_share']:.0%} "
                     f"({benchlib.fmt(row['data_wait_seconds_per_step'])} s/step) | {benchlib.fmt(row['first_step_s'])} "
                     f"| {row['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
