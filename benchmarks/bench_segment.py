#!/usr/bin/env python3
"""End-to-end ``bratsunet segment`` of one BraTS-size case against the original's prediction, side by side.

    python benchmarks/bench_segment.py           # BraTS 2020 DynUNet, 240×240×155 phantom, 3 rounds
    python benchmarks/bench_segment.py --quick   # small DynUNet, 96×96×64 phantom, 96³ network input, 1 round

Setup (in a temporary folder): a phantom case written as BraTS NIfTI files, the BraTS 2020 config (network and
``desired_shape`` as chosen) and the network's seeded weights saved as the original saved them (a bare
state_dict). Contenders, each a fresh process per run, run in turn in every round so that machine load hits
them alike:

- ``baseline``: benchmarks/baseline_original_predict.py (what the original's prediction does);
- ``bratsunet-<backend>``: ``bratsunet segment --backend <backend>`` through benchmarks/timed_segment.py, which
  adds up the time of reading, preprocessing, network, postprocessing and writing;
- ``bratsunet-<precision>``: ``bratsunet segment --precision <precision>`` for each reduced precision asked for
  (``bf16`` only where the CPU has bf16 units: it is refused elsewhere).

Before the rounds, one untimed ``auto`` run fills a fresh export cache (ONNX export + the one-time agreement
check), one untimed run per reduced precision compiles it (int8: quantizes it, calibrated on phantoms) and one
baseline run warms the file cache; these cold runs are reported on their own. Reported: median wall
time of the whole process, its split, peak memory, the speed-up over the baseline and the agreement of the
probabilities (max |Δ|, must be ≤ 1e-3) and label maps (Dice per region) with the baseline's.
Results: benchmarks/results/segment[-quick].json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import benchlib

#: End-to-end speed-up over the original needed per precision (issue #18).
SPEEDUP_NEEDED = {"fp32": 2.0, "bf16": 3.0, "int8": 4.0}
PROBABILITY_TOLERANCE = 1e-3
OUTSIDE_NETWORK_LIMIT = 0.10
CASE_ID = "BraTS20_Phantom_000"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small network, small case, one round")
    parser.add_argument("--network", choices=sorted(benchlib.NETWORK_FILTERS), help="default brats (quick: small)")
    parser.add_argument("--case-shape", type=int, nargs=3, help="phantom grid (default 240 240 155, quick 96 96 64)")
    parser.add_argument("--desired-shape", type=int, help="network input edge (default 128, quick 96)")
    parser.add_argument("--repeats", type=int, help="rounds (default 3, quick 1)")
    parser.add_argument("--backends", default="auto,eager", help="bratsunet --backend values to run (default auto,eager)")
    parser.add_argument("--precisions", default="bf16,int8",
                        help="reduced --precision values to run besides fp32 (default bf16,int8; bf16 is skipped on "
                             "CPUs without bf16 units)")
    parser.add_argument("--work-dir", help="keep the case, model and outputs here instead of a temporary folder")
    args = parser.parse_args(argv)
    args.network = args.network or ("small" if args.quick else "brats")
    args.case_shape = args.case_shape or ([96, 96, 64] if args.quick else [240, 240, 155])
    # The small network at 96³ is above backends.AUTO_MIN_FLOPS, so that quick runs exercise auto's choice.
    args.desired_shape = args.desired_shape or (96 if args.quick else 128)
    args.repeats = args.repeats or (1 if args.quick else 3)
    return args


def setup(work: Path, args: argparse.Namespace, **dataset: object) -> dict:
    """Write the phantom case, the config and the seeded weights; return their paths."""
    import torch

    from BratsUNetLib.phantoms.generate import MODALITIES, generate_case, write_case

    paths = write_case(generate_case(tuple(args.case_shape), seed=0), work / "case", CASE_ID)
    config = benchlib.benchmark_config(args.network, desired_shape=[args.desired_shape] * 3, **dataset)
    (work / "config.json").write_text(json.dumps(config, indent=1))
    torch.save(benchlib.seeded_network(config["model"]).state_dict(), work / "model.pth")
    return {"images": [str(paths[name]) for name in MODALITIES], "config": str(work / "config.json"),
            "model": str(work / "model.pth")}


def baseline_command(work: Path, files: dict, tag: str) -> tuple[list[str], Path, Path]:
    timings, output = work / f"timings-{tag}.json", work / f"probabilities-{tag}.nii.gz"
    return ([benchlib.python(), benchlib.HERE / "baseline_original_predict.py", "--config", files["config"],
             "--model", files["model"], "--images", *files["images"], "--output", output, "--timings", timings],
            timings, output)


def segment_command(work: Path, files: dict, tag: str, extra: list[str]) -> tuple[list[str], Path, Path]:
    timings, output = work / f"timings-{tag}.json", work / f"probabilities-{tag}.nii.gz"
    flair, t1, t1ce, t2 = files["images"]
    return ([benchlib.python(), benchlib.HERE / "timed_segment.py", timings, "segment", "--model", files["model"],
             "--config", files["config"], "--flair", flair, "--t1", t1, "--t1ce", t1ce, "--t2", t2,
             "--output", work / f"labels-{tag}.nii.gz", "--probabilities", output, "--overwrite",
             "--progress", "none", *extra], timings, output)


def measure(command: tuple[list[str], Path, Path], env: dict) -> dict:
    """One fresh process: wall time, the stage split it recorded, its peak memory."""
    argv, timings_path, _ = command
    run = benchlib.run_measured(argv, env=env)
    timings = json.loads(timings_path.read_text())
    stages = timings["stages_s"]
    accounted = sum(stages.values())
    return {"wall_s": run["wall_s"], "stages_s": {
        "startup_imports_exit": run["wall_s"] - timings["in_process_s"] + timings["imports_s"],
        **stages,
        "other": timings["in_process_s"] - timings["imports_s"] - accounted},
        "peak_rss_mb": timings["peak_rss_mb"], "backend": timings.get("backend")}


def summarize(runs: list[dict]) -> dict:
    """Medians over the runs of one contender."""
    stages = {name: benchlib.median([run["stages_s"][name] for run in runs]) for name in runs[0]["stages_s"]}
    wall = benchlib.median([run["wall_s"] for run in runs])
    return {"wall_s": wall, "walls_s": [run["wall_s"] for run in runs], "stages_s": stages,
            "outside_network_fraction": 1 - stages.get("network", 0.0) / wall if "network" in stages else None,
            "peak_rss_mb": max(run["peak_rss_mb"] for run in runs), "backend": runs[-1].get("backend")}


def compare(ours: Path, baseline: Path) -> dict:
    """Probabilities (max |Δ|) and label maps (Dice per region, ORIGINAL.md §3) of ours against the baseline's."""
    import nibabel
    import numpy as np

    from BratsUNetLib.data.labels import REGIONS, labels_to_regions, regions_to_labels
    from BratsUNetLib.evaluation.metrics import dice

    a = np.asanyarray(nibabel.load(ours).dataobj, dtype=np.float32)
    b = np.asanyarray(nibabel.load(baseline).dataobj, dtype=np.float32)
    if a.shape != b.shape:
        return {"error": f"shapes differ: {a.shape} vs {b.shape}"}
    labels_a = labels_to_regions(regions_to_labels(np.moveaxis(a, -1, 0)))
    labels_b = labels_to_regions(regions_to_labels(np.moveaxis(b, -1, 0)))
    return {"max_abs_probability_diff": float(np.abs(a - b).max()),
            "dice": {region: dice(x, y) for region, x, y in zip(REGIONS, labels_a, labels_b)}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = benchlib.machine()
    with tempfile.TemporaryDirectory(prefix="bench-segment-") as temporary:
        work = Path(args.work_dir or temporary)
        work.mkdir(parents=True, exist_ok=True)
        files = setup(work, args)
        env = {"BRATSUNET_CACHE_DIR": str(work / "export-cache")}  # starts empty: the cold run is honest
        contenders = {"baseline": baseline_command(work, files, "baseline")}
        for backend in [name.strip() for name in args.backends.split(",") if name.strip()]:
            contenders[f"bratsunet-{backend}"] = segment_command(work, files, backend, ["--backend", backend])
        precisions = [name.strip() for name in args.precisions.split(",") if name.strip()]
        if "bf16" in precisions and not info["bf16_hardware"]:
            print("bf16: skipped, this CPU has no bf16 units (bratsunet refuses it here)", flush=True)
            precisions.remove("bf16")
        for precision in precisions:
            contenders[f"bratsunet-{precision}"] = segment_command(work, files, precision, ["--precision", precision])

        print("cold run (fills the export cache) ...", flush=True)
        cold = measure(segment_command(work, files, "cold", ["--backend", "auto"]), env)
        cold_precisions = {}
        for precision in precisions:
            print(f"cold run of {precision} (compiles{', quantizes' if precision == 'int8' else ''}) ...", flush=True)
            cold_precisions[precision] = measure(segment_command(work, files, f"cold-{precision}",
                                                                 ["--precision", precision]), env)
        measure(contenders["baseline"], env)  # warms the file cache for the baseline too
        runs: dict[str, list[dict]] = {name: [] for name in contenders}
        for round_number in range(1, args.repeats + 1):
            for name, command in contenders.items():
                runs[name].append(measure(command, env))
                print(f"round {round_number} {name:>20}: {runs[name][-1]['wall_s']:.1f} s", flush=True)
        results = {name: summarize(found) for name, found in runs.items()}
        for name, command in contenders.items():
            if name != "baseline":
                results[name]["agreement_with_baseline"] = compare(command[2], contenders["baseline"][2])
                results[name]["speedup_over_baseline"] = results["baseline"]["wall_s"] / results[name]["wall_s"]

    checks = {}
    for precision, name in (("fp32", "bratsunet-auto"), *((p, f"bratsunet-{p}") for p in precisions)):
        if name in results:
            result = results[name]
            speedup, needed = result["speedup_over_baseline"], SPEEDUP_NEEDED[precision]
            checks[precision] = {"speedup": speedup, "speedup_needed": needed, "speedup_ok": speedup >= needed,
                                 "outside_network_ok": (result["outside_network_fraction"] or 1.0)
                                 < OUTSIDE_NETWORK_LIMIT}
    if "fp32" in checks:
        checks["fp32"]["probabilities_ok"] = results["bratsunet-auto"]["agreement_with_baseline"].get(
            "max_abs_probability_diff", 1.0) <= PROBABILITY_TOLERANCE
    payload = {"benchmark": "segment", "quick": args.quick, "machine": info, "network": args.network,
               "case_shape": args.case_shape, "desired_shape": args.desired_shape, "repeats": args.repeats,
               "cold_auto_run": cold, "cold_precision_runs": cold_precisions, "contenders": results, "checks": checks}
    path = benchlib.write_results("segment", payload, args.quick)
    for name, result in results.items():
        extra = ""
        if "speedup_over_baseline" in result:
            agreement = result["agreement_with_baseline"]
            extra = (f", ×{result['speedup_over_baseline']:.2f} vs baseline, max |Δp| "
                     f"{agreement.get('max_abs_probability_diff', float('nan')):.1e}")
        print(f"{name:>20}: {result['wall_s']:.1f} s (network {result['stages_s'].get('network', 0):.1f} s), "
              f"peak {result['peak_rss_mb']:.0f} MB{extra}")
    print(f"checks: {checks}; results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
