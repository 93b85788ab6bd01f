#!/usr/bin/env python3
"""The network alone against the machine's limit: every execution option, side by side in one run.

    python benchmarks/bench_network.py            # BraTS 2020 DynUNet on 1×4×128³, 3 timed runs per option
    python benchmarks/bench_network.py --quick    # small DynUNet on 1×4×96³, 2 runs (checks the script works)

For each option (see BratsUNetLib/inference/backends.py) a fresh process builds the network with the same seeded weights,
runs it once untimed (export / compilation / agreement check happen there: reported as ``first call``) and
then ``--repeats`` timed passes on the same input, a z-scored phantom case. Reported per option: median time,
achieved GFLOP/s (FLOPs counted by torch.utils.flop_counter), their fraction of the SGEMM rate measured in the
same run and of the CPU's theoretical peak, peak memory of the process, and agreement with eager fp32: largest
logit difference and Dice of the BraTS label maps (sigmoid > 0.5, ORIGINAL.md §3) per region.
Results: benchmarks/results/network[-quick].json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import benchlib

# <backend>-<precision> runs the backend at a reduced --precision (bf16 and amp only where the CPU has bf16 units).
OPTIONS = ("eager", "channels_last", "compile", "onnxruntime", "openvino", "openvino-bf16", "openvino-int8", "amp",
           "auto")
QUICK_OPTIONS = ("eager", "channels_last", "onnxruntime", "openvino", "openvino-bf16", "openvino-int8", "amp", "auto")
BF16_OPTIONS = ("amp", "openvino-bf16")
DICE_NEEDED = 0.999


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small network, 96³, 2 runs, no torch.compile")
    parser.add_argument("--network", choices=sorted(benchlib.NETWORK_FILTERS), help="default: brats (quick: small)")
    parser.add_argument("--shape", type=int, help="edge of the cubic input (default 128, quick 96)")
    parser.add_argument("--repeats", type=int, help="timed runs per option (default 3, quick 2)")
    parser.add_argument("--options", help=f"comma-separated, from {','.join(OPTIONS)} (default: all; "
                                          f"{', '.join(BF16_OPTIONS)} only where the CPU has bf16 units)")
    parser.add_argument("--sgemm-size", type=int, help="matrix edge of the SGEMM reference (default 4096, quick 2048)")
    parser.add_argument("--fma-units", type=int, default=2, help="FMA units per core for the peak (default 2)")
    parser.add_argument("--clock-ghz", type=float, help="CPU clock for the peak (default: read from the system)")
    parser.add_argument("--child", nargs=2, metavar=("OPTION", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.network = args.network or ("small" if args.quick else "brats")
    # 96³ keeps the small network above backends.AUTO_MIN_FLOPS, so that quick runs exercise auto's choice.
    args.shape = args.shape or (96 if args.quick else 128)
    args.repeats = args.repeats or (2 if args.quick else 3)
    args.sgemm_size = args.sgemm_size or (2048 if args.quick else 4096)
    return args


def phantom_input(shape: int, seed: object = 0):
    """A phantom case of ``shape``³ voxels, z-scored per channel as the model's preprocessing does: (1, 4, S, S, S)."""
    import numpy as np

    from BratsUNetLib.phantoms.generate import MODALITIES, generate_case

    case = generate_case((shape, shape, shape), seed=seed)
    image = np.stack([case.images[name] for name in MODALITIES]).astype(np.float32)
    flat = image.reshape(len(image), -1)
    image = (image - flat.mean(1)[:, None, None, None]) / flat.std(1)[:, None, None, None]
    return image[None].astype(np.float32)


def make_input(shape: int, path: Path) -> None:
    import numpy as np

    np.save(path, phantom_input(shape))


def calibration(shape) -> list:
    """int8's calibration inputs: other phantoms than the measured one, as many as bratsunet segment uses."""
    from BratsUNetLib.inference.calibration import CALIBRATION_CASES, CALIBRATION_SEED

    return [phantom_input(int(shape[-1]), (CALIBRATION_SEED, index)) for index in range(CALIBRATION_CASES)]


def child(args: argparse.Namespace) -> None:
    """One option in this fresh process: print a JSON line with its times and memory, save its logits."""
    import numpy as np
    import torch

    from BratsUNetLib.inference import backends

    option, workdir = args.child[0], Path(args.child[1])
    if option == "sgemm":
        print(json.dumps({"gflops": benchlib.sgemm_gflops(args.sgemm_size, max(args.repeats, 3))}))
        return
    network = benchlib.seeded_network(benchlib.model_block(args.network))
    batch = torch.from_numpy(np.load(workdir / "input.npy"))
    rss_before = benchlib.own_rss_mb()
    start = time.perf_counter()
    backend, _, precision = option.partition("-")
    runner = backends.prepare(network, tuple(batch.shape), backend=backend, cache_dir=workdir / "cache",
                              log=lambda text: print(text, file=sys.stderr), precision=precision or None,
                              calibration=calibration)
    logits = runner(batch)
    first_call = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        logits = runner(batch)
        times.append(time.perf_counter() - start)
    np.save(workdir / f"logits-{option}.npy", logits.float().numpy())
    print(json.dumps({"times_s": times, "first_call_s": first_call, "backend": runner.description,
                      "rss_before_mb": rss_before, "peak_rss_mb": benchlib.own_peak_rss_mb()}))


def agreement(workdir: Path, option: str) -> dict:
    """Largest logit difference and per-region Dice of the label maps against eager fp32."""
    import numpy as np

    from BratsUNetLib.data.labels import REGIONS, labels_to_regions, regions_to_labels
    from BratsUNetLib.evaluation.metrics import dice

    reference = np.load(workdir / "logits-eager.npy")[0]
    logits = np.load(workdir / f"logits-{option}.npy")[0]
    probability = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    ours = labels_to_regions(regions_to_labels(probability(logits)))
    theirs = labels_to_regions(regions_to_labels(probability(reference)))
    return {"max_abs_logit_diff": float(np.abs(logits - reference).max()),
            "max_abs_probability_diff": float(np.abs(probability(logits) - probability(reference)).max()),
            "dice": {region: dice(a, b) for region, a, b in zip(REGIONS, ours, theirs)}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    info = benchlib.machine(args.fma_units, args.clock_ghz)
    if args.options:
        options = [name.strip() for name in args.options.split(",") if name.strip()]
    else:
        options = [name for name in (QUICK_OPTIONS if args.quick else OPTIONS)
                   if name not in BF16_OPTIONS or info["bf16_hardware"]]
    options = ["eager"] + [name for name in options if name != "eager"]  # eager is the reference
    block = benchlib.model_block(args.network)
    shape = (1, 4, args.shape, args.shape, args.shape)
    flops = benchlib.count_flops(block, shape)
    print(f"{args.network} DynUNet, input {shape}: {flops / 1e12:.3f} TFLOP per pass; {info['peak_formula']} = "
          f"{benchlib.fmt(info['peak_gflops'])} GFLOP/s peak", flush=True)

    base = [benchlib.python(), __file__, "--network", args.network, "--shape", str(args.shape), "--repeats",
            str(args.repeats), "--sgemm-size", str(args.sgemm_size)]
    rows = {}
    sgemm: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-network-") as folder:
        workdir = Path(folder)
        make_input(args.shape, workdir / "input.npy")
        # SGEMM before and after the options, so that a change in machine load shows in its spread.
        sgemm += benchlib.last_json_line(benchlib.run_measured([*base, "--child", "sgemm", folder])["stdout"])["gflops"]
        for option in options:
            try:
                run = benchlib.run_measured([*base, "--child", option, folder])
            except RuntimeError as exc:
                print(f"{option}: failed: {str(exc).splitlines()[-1]}", flush=True)
                rows[option] = {"error": str(exc)[-2000:]}
                continue
            result = benchlib.last_json_line(run["stdout"])
            result["median_s"] = benchlib.median(result["times_s"])
            result["gflops"] = flops / result["median_s"] / 1e9
            result.update(agreement(workdir, option))
            result["agrees"] = min(result["dice"].values()) >= DICE_NEEDED
            rows[option] = result
            print(f"{option:>14}: {result['median_s']:.2f} s ({result['gflops']:.0f} GFLOP/s), first call "
                  f"{result['first_call_s']:.1f} s, peak {result['peak_rss_mb']:.0f} MB, max |Δlogit| "
                  f"{result['max_abs_logit_diff']:.1e}, Dice min {min(result['dice'].values()):.4f}"
                  + (f" → {result['backend']}" if option == "auto" else ""), flush=True)
        sgemm += benchlib.last_json_line(benchlib.run_measured([*base, "--child", "sgemm", folder])["stdout"])["gflops"]
    sgemm_rate = benchlib.median(sgemm)
    for row in rows.values():
        if "gflops" in row:
            row["fraction_of_sgemm"] = row["gflops"] / sgemm_rate
            row["fraction_of_peak"] = row["gflops"] / info["peak_gflops"] if info["peak_gflops"] else None
    payload = {"benchmark": "network", "quick": args.quick, "machine": info, "network": args.network,
               "parameters": _parameters(block), "input_shape": list(shape), "flops": flops,
               "sgemm": {"size": args.sgemm_size, "gflops": sgemm, "median_gflops": sgemm_rate},
               "repeats": args.repeats, "options": rows}
    path = benchlib.write_results("network", payload, args.quick)
    print(f"SGEMM {sgemm_rate:.0f} GFLOP/s (median of {len(sgemm)}); results: {path}")
    return 0


def _parameters(block: dict) -> int:
    import torch

    from BratsUNetLib.models.networks import build_network, count_parameters

    with torch.device("meta"):
        return count_parameters(build_network(block))


if __name__ == "__main__":
    sys.exit(main())
