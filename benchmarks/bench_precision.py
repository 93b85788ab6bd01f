#!/usr/bin/env python3
"""Dice per region of a trained model on held-out phantoms at each ``--precision``: what bf16 and int8 cost.

    python benchmarks/bench_precision.py             # the demo's model (8 minutes of training), 8 held-out cases
    python benchmarks/bench_precision.py --quick     # 1 minute of training on small cases (checks the script works)
    python benchmarks/bench_precision.py --demo-dir bratsunet-demo   # the model of a demo run already made

The model is the demo's (``bratsunet demo``: a DynUNet 8-128 on 64³ inputs trained on phantoms within a wall-clock
budget), the demo's own held-out cases plus phantoms of seeds 1000 and up, never seen in training. Each precision
runs in a fresh process through ``segment_case``, as ``bratsunet segment --precision`` does: one untimed case
first (int8: quantized there, calibrated on the phantoms of ``BratsUNetLib.inference.calibration``), then every
case timed. Reported per precision: what ran it, mean Dice per region against the truth, its change from fp32
(the issue's bound: at most 0.01 per region), the largest per-case change, the median seconds per case and the
process's peak memory. bf16 runs only where the CPU has bf16 units (it is refused elsewhere).
Results: benchmarks/results/precision[-quick].json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import benchlib

PRECISIONS = ("fp32", "bf16", "int8")
REGIONS = ("WT", "TC", "ET")
DICE_CHANGE_ALLOWED = 0.01
MODALITIES = ("flair", "t1", "t1ce", "t2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 minute of training, 96×96×64 cases, 3 held out")
    parser.add_argument("--demo-dir", help="a finished demo's --output folder to take the model and cases from")
    parser.add_argument("--minutes", type=float, help="demo training budget (default 8, quick 1)")
    parser.add_argument("--held-out", type=int, help="extra held-out phantoms (default 4, quick 1)")
    parser.add_argument("--work-dir", help="keep everything here instead of a temporary folder")
    parser.add_argument("--child", nargs=3, metavar=("PRECISION", "MODEL", "CASES_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.minutes = args.minutes or (1.0 if args.quick else 8.0)
    args.held_out = args.held_out if args.held_out is not None else (1 if args.quick else 4)
    return args


def child(precision: str, model: str, cases_json: str) -> None:
    """One precision in this fresh process: Dice and seconds per case, peak memory (a JSON line)."""
    from BratsUNetLib.inference.loaded_model import load_models
    from BratsUNetLib.inference.options import InferenceOptions
    from BratsUNetLib.inference.pipeline import segment_case

    cases = json.loads(Path(cases_json).read_text())
    models = load_models([model], device="cpu")
    options = InferenceOptions(precision=precision)
    start = time.perf_counter()
    segment_case(cases[0]["images"], models, options)  # compiles / quantizes: untimed
    first = time.perf_counter() - start
    rows = []
    for case in cases:
        start = time.perf_counter()
        result = segment_case(case["images"], models, options)
        seconds = time.perf_counter() - start
        rows.append({"case": case["id"], "seconds": seconds, "dice": benchlib.case_dice(result, case["label"])})
    print(json.dumps({"backend": result.backend, "first_case_s": first, "cases": rows,
                      "peak_rss_mb": benchlib.own_peak_rss_mb()}))


def demo(work: Path, args: argparse.Namespace) -> Path:
    """Run the demo into ``work/demo`` (or take ``--demo-dir``); return its folder."""
    if args.demo_dir:
        return Path(args.demo_dir)
    folder = work / "demo"
    command = [benchlib.python(), "-m", "BratsUNetLib", "demo", "--output", str(folder), "--minutes",
               str(args.minutes), "--progress", "none"]  # never --overwrite: a --work-dir's demo stays
    if args.quick:
        command += ["--shape", "96", "96", "64", "--cases", "6", "1", "2"]
    print(f"demo: training for {args.minutes:g} minutes ...", flush=True)
    benchlib.run_measured(command)
    return folder


def held_out_cases(demo_dir: Path, work: Path, extra: int) -> list[dict]:
    """The demo's held-out cases (those it predicted) and ``extra`` new phantoms of the demo's grid."""
    import nibabel

    from BratsUNetLib.phantoms.generate import generate_cohort

    predicted = sorted(path.name.split(".")[0] for path in (demo_dir / "predictions").glob("*.nii.gz"))
    folders = [demo_dir / "cases" / name for name in predicted]
    if extra:
        shape = nibabel.load(folders[0] / f"{folders[0].name}_flair.nii.gz").shape
        folders += generate_cohort(work / "held_out", extra, shape, seed=1000)
    return [{"id": folder.name, "images": [str(folder / f"{folder.name}_{m}.nii.gz") for m in MODALITIES],
             "label": str(folder / f"{folder.name}_seg.nii.gz")} for folder in folders]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    info = benchlib.machine()
    precisions = [name for name in PRECISIONS if name != "bf16" or info["bf16_hardware"]]
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as temporary:
        work = Path(args.work_dir or temporary)
        work.mkdir(parents=True, exist_ok=True)
        demo_dir = demo(work, args)
        metrics = json.loads((demo_dir / "report" / "metrics.json").read_text())
        model = metrics["model"]
        cases = held_out_cases(demo_dir, work, args.held_out)
        (work / "cases.json").write_text(json.dumps(cases))
        env = {"BRATSUNET_CACHE_DIR": str(work / "export-cache")}
        rows = {}
        for precision in precisions:
            run = benchlib.run_measured([benchlib.python(), __file__, "--child", precision, model,
                                         str(work / "cases.json")], env=env)
            rows[precision] = benchlib.last_json_line(run["stdout"])
            print(f"{precision}: {rows[precision]['backend']}", flush=True)
    reference = rows["fp32"]
    for precision, row in rows.items():
        row["mean_dice"] = {region: statistics.fmean([case["dice"][region] for case in row["cases"]])
                            for region in REGIONS}
        row["median_case_s"] = benchlib.median([case["seconds"] for case in row["cases"]])
        row["dice_change"] = {region: row["mean_dice"][region] - reference["mean_dice"][region] for region in REGIONS}
        row["largest_case_change"] = {region: max(abs(case["dice"][region] - ours["dice"][region])
                                                  for case, ours in zip(reference["cases"], row["cases"]))
                                      for region in REGIONS}
        row["within_bound"] = all(abs(change) <= DICE_CHANGE_ALLOWED for change in row["dice_change"].values())
        print(f"{precision:>5} ({row['backend']}): Dice " +
              " / ".join(f"{region} {row['mean_dice'][region]:.4f} ({row['dice_change'][region]:+.4f})"
                         for region in REGIONS) +
              f"; {row['median_case_s']:.2f} s per case; peak {row['peak_rss_mb']:.0f} MB", flush=True)
    payload = {"benchmark": "precision", "quick": args.quick, "machine": info, "model": model,
               "demo_epochs": metrics.get("epochs"), "held_out_cases": [case["id"] for case in cases],
               "dice_change_allowed": DICE_CHANGE_ALLOWED, "precisions": rows}
    print(f"results: {benchlib.write_results('precision', payload, args.quick)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
