#!/usr/bin/env python3
"""Inference strategies at native resolution: one padded whole-volume pass against sliding windows.

    python benchmarks/bench_strategies.py          # BraTS 2020 DynUNet, 240×240×155 phantom, 128³ windows
    python benchmarks/bench_strategies.py --quick  # tiny DynUNet, 96×96×64 phantom, 32³ windows

Each strategy is a ``bratsunet segment`` process (benchmarks/timed_segment.py) on the same phantom case and
seeded weights, with the config's ``inference`` block set accordingly:

- ``whole``: no resize (``desired_shape`` removed); the foreground crop is padded to a multiple of the
  network's downsampling and run in one pass;
- ``sliding-<overlap>-<blend>``: ``--sliding-window`` with MONAI's SlidingWindowInferer, windows of
  ``--roi``³, for each overlap:blend of ``--windows``;
- ``resized``: the original's way (resize to ``--roi``³ and back), for reference.

The first strategy of each network input shape (whole; the 128³ windows, which ``resized`` shares) runs once
untimed (the export and agreement check for that shape: *first run*), then every strategy ``--repeats`` times.
Reported: median wall time, network time, peak memory, and agreement with ``whole`` (max |Δ| of the
probabilities, Dice of the label maps per region). Results: benchmarks/results/strategies[-quick].json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import bench_segment
import benchlib


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny network, small case, 32³ windows, one run")
    parser.add_argument("--network", choices=sorted(benchlib.NETWORK_FILTERS), help="default brats (quick: tiny)")
    parser.add_argument("--case-shape", type=int, nargs=3, help="phantom grid (default 240 240 155, quick 96 96 64)")
    parser.add_argument("--roi", type=int, help="window edge, also the resized input (default 128, quick 32)")
    parser.add_argument("--windows", default="0.25:constant,0.25:gaussian,0.5:gaussian",
                        help="sliding-window variants as overlap:blend (default 0.25:constant,0.25:gaussian,"
                             "0.5:gaussian; MONAI blends: constant, gaussian)")
    parser.add_argument("--backend", default="auto", help="bratsunet --backend for every strategy (default auto)")
    parser.add_argument("--repeats", type=int, help="timed runs per strategy (default 1: a BraTS-size sliding-window "
                                                    "run takes minutes; quick 1)")
    parser.add_argument("--work-dir", help="keep the case, configs and outputs here instead of a temporary folder")
    args = parser.parse_args(argv)
    args.network = args.network or ("tiny" if args.quick else "brats")
    args.case_shape = args.case_shape or ([96, 96, 64] if args.quick else [240, 240, 155])
    args.roi = args.roi or (32 if args.quick else 128)
    args.repeats = args.repeats or 1
    args.desired_shape = args.roi  # what bench_segment.setup writes into the base config
    return args


def strategy_configs(work: Path, args: argparse.Namespace, base_config: Path) -> dict[str, tuple[Path, list[str]]]:
    """Per strategy: a config file and the extra ``segment`` flags."""
    base = json.loads(base_config.read_text())
    strategies = {}

    def write(name: str, config: dict, flags: list[str]) -> None:
        path = work / f"config-{name}.json"
        path.write_text(json.dumps(config, indent=1))
        strategies[name] = (path, flags)

    native = dict(base, dataset={key: value for key, value in base["dataset"].items()
                                 if key not in ("desired_shape", "resample")})
    write("whole", native, [])
    for variant in args.windows.split(","):
        overlap, mode = variant.split(":")
        inferer = {"name": "SlidingWindowInferer", "roi_size": [args.roi] * 3, "sw_batch_size": 1,
                   "overlap": float(overlap), "mode": mode.strip()}
        write(f"sliding-{float(overlap):g}-{mode.strip()}", dict(base, inference=inferer), ["--sliding-window"])
    write("resized", base, [])
    return strategies


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = benchlib.machine()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-strategies-") as temporary:
        work = Path(args.work_dir or temporary)
        work.mkdir(parents=True, exist_ok=True)
        files = bench_segment.setup(work, args)
        env = {"BRATSUNET_CACHE_DIR": str(work / "export-cache")}
        outputs = {}
        warmed: set[str] = set()
        for name, (config, flags) in strategy_configs(work, args, Path(files["config"])).items():
            command = bench_segment.segment_command(work, dict(files, config=str(config)), name,
                                                    ["--backend", args.backend, *flags])
            network_input = "whole" if name == "whole" else "roi"  # sliding windows and resized share 128³ inputs
            try:
                first = bench_segment.measure(command, env) if network_input not in warmed else None
                warmed.add(network_input)
                runs = [bench_segment.measure(command, env) for _ in range(args.repeats)]
            except RuntimeError as exc:  # e.g. out of memory for the whole-volume pass
                print(f"{name}: failed: {str(exc).splitlines()[-1]}", flush=True)
                results[name] = {"error": str(exc)[-2000:]}
                continue
            results[name] = {**bench_segment.summarize(runs), "first_run_s": first and first["wall_s"]}
            outputs[name] = command[2]
            print(f"{name:>24}: {results[name]['wall_s']:.1f} s (network {results[name]['stages_s']['network']:.1f} s),"
                  f" peak {results[name]['peak_rss_mb']:.0f} MB", flush=True)
        if "whole" in outputs:
            for name, output in outputs.items():
                results[name]["agreement_with_whole"] = bench_segment.compare(output, outputs["whole"])
    payload = {"benchmark": "strategies", "quick": args.quick, "machine": info, "network": args.network,
               "case_shape": args.case_shape, "roi": args.roi, "backend": args.backend, "repeats": args.repeats,
               "strategies": results}
    path = benchlib.write_results("strategies", payload, args.quick)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
