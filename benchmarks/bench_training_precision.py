#!/usr/bin/env python3
"""Training on the CPU in bf16 (``training.amp`` where the CPU has bf16 units) against fp32, at equal steps.

    python benchmarks/bench_training_precision.py           # the demo's network and cases, 40 epochs each
    python benchmarks/bench_training_precision.py --quick   # 4 epochs on small cases (checks the script works)

Both runs train the demo's DynUNet (filters 8-128, 64³ inputs, Dice + cross-entropy, batch 2) on the same phantoms
with the same seed for the same number of epochs, each in a fresh process through
:func:`BratsUNetLib.training.loop.train`: one with ``"amp": false`` (fp32), one with ``"amp": true`` (bf16
autocast; on a CPU without bf16 units it trains in fp32 and says so, and this script says it measured nothing
new). Reported per run: seconds per step (steady state, the run's first step left out), the held-out mean Dice per
region of its final model (segmented in fp32), and the step against its FLOP cost: forward + backward ≈ 3 × the
forward pass's FLOPs (``torch.utils.flop_counter``), divided by the SGEMM rate measured in the same run.
Results: benchmarks/results/training_precision[-quick].json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import benchlib

REGIONS = ("WT", "TC", "ET")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 epochs, 4 small training cases")
    parser.add_argument("--epochs", type=int, help="epochs per run (default 40, quick 4)")
    parser.add_argument("--child", nargs=3, metavar=("CONFIG", "WORKDIR", "HELD_OUT_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.epochs = args.epochs or (4 if args.quick else 40)
    return args


def child(config_path: str, work_dir: str, held_out_json: str) -> None:
    """Train one run, then segment the held-out cases with its final model: a JSON line."""
    from BratsUNetLib.inference.loaded_model import load_models
    from BratsUNetLib.inference.pipeline import segment_case
    from BratsUNetLib.training.loop import train
    from BratsUNetLib.training.settings import TrainingSettings

    from BratsUNetLib.events import ProgressReporter

    messages: list[str] = []
    reporter = ProgressReporter("none")
    reporter.message = messages.append
    result = train(config_path, work_dir, settings=TrainingSettings(device="cpu", seed=0), reporter=reporter)
    timing = result.timing
    steady = (timing["step_seconds"] - timing["first_step_seconds"]) / (timing["steps"] - 1)
    models = load_models([result.model], device="cpu")
    dice: dict[str, list[float]] = {region: [] for region in REGIONS}
    for case in json.loads(Path(held_out_json).read_text()):
        for region, value in benchlib.case_dice(segment_case(case["images"], models), case["label"]).items():
            dice[region].append(value)
    print(json.dumps({"steps": timing["steps"], "seconds_per_step": steady, "epochs": result.epochs,
                      "mean_dice": {region: statistics.fmean(values) for region, values in dice.items()},
                      "fp32_note": any("training in float32" in message for message in messages),
                      "peak_rss_mb": benchlib.own_peak_rss_mb()}))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    from BratsUNetLib.demo.run import DemoSettings, demo_config
    from BratsUNetLib.phantoms.generate import MODALITIES, generate_cohort

    info = benchlib.machine()
    settings = DemoSettings(output=Path("."), n_training=4 if args.quick else 12, n_validation=1,
                            case_shape=(96, 96, 64) if args.quick else (160, 160, 120))
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench-training-precision-") as folder:
        work = Path(folder)
        cases = generate_cohort(work / "cases", settings.n_training + settings.n_validation + 4,
                                settings.case_shape, seed=11)
        held_out = [{"images": [str(case / f"{case.name}_{m}.nii.gz") for m in MODALITIES],
                     "label": str(case / f"{case.name}_seg.nii.gz")}
                    for case in cases[settings.n_training + settings.n_validation:]]
        (work / "held_out.json").write_text(json.dumps(held_out))
        config = demo_config(settings, cases)
        batch = config["training"]["batch_size"]
        for name, amp in (("fp32", False), ("bf16", True)):
            config["training"].update(n_epochs=args.epochs, amp=amp)
            (work / f"{name}.json").write_text(json.dumps(config))
            run = benchlib.run_measured([benchlib.python(), __file__, "--child", work / f"{name}.json",
                                         work / f"run-{name}", work / "held_out.json"])
            rows[name] = benchlib.last_json_line(run["stdout"])
            print(f"{name}: {rows[name]['seconds_per_step']:.3f} s/step, Dice "
                  + " / ".join(f"{rows[name]['mean_dice'][r]:.3f}" for r in REGIONS), flush=True)
    sgemm = benchlib.median(benchlib.sgemm_gflops(4096, 3))
    step_flops = 3 * batch * benchlib.count_flops(config["model"], (1, 4, *settings.network_shape))
    for row in rows.values():
        row["step_flop_cost_s"] = step_flops / (sgemm * 1e9)
        row["step_over_flop_cost"] = row["seconds_per_step"] / row["step_flop_cost_s"]
    payload = {"benchmark": "training_precision", "quick": args.quick, "machine": info,
               "bf16_units": info["bf16_hardware"], "epochs": args.epochs, "training_cases": settings.n_training,
               "held_out_cases": len(held_out), "sgemm_gflops": sgemm, "step_gflop": step_flops / 1e9,
               "runs": rows}
    path = benchlib.write_results("training_precision", payload, args.quick)
    for name, row in rows.items():
        print(f"{name}: {row['seconds_per_step']:.3f} s/step = {row['step_over_flop_cost']:.2f} × its FLOP cost at "
              f"the SGEMM rate; Dice " + " / ".join(f"{row['mean_dice'][r]:.3f}" for r in REGIONS))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
