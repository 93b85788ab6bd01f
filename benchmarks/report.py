#!/usr/bin/env python3
"""Render the inference benchmark results as the tables of benchmarks/README.md.

    python benchmarks/report.py           # from results/{network,segment,strategies,precision}.json (full runs)
    python benchmarks/report.py --quick   # from the *-quick.json files

Only the text between the ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` markers is replaced
(NAME = machine, network, segment, strategies, precision); the rest of the README is left as it is.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

import benchlib
from benchlib import fmt

README = benchlib.HERE / "README.md"


def load(name: str, quick: bool) -> dict | None:
    path = benchlib.RESULTS / f"{name}{'-quick' if quick else ''}.json"
    return json.loads(path.read_text()) if path.exists() else None


def label(result: dict) -> str:
    mode = "**quick mode: a check that the script works, not a measurement to quote**" if result["quick"] else \
        "full run"
    return f"{mode}; {result['machine']['date'][:10]}"


def machine_table(result: dict) -> str:
    m = result["machine"]
    v = m["versions"]
    rows = [
        ("CPU", f"{m['cpu']} ({m['logical_cpus']} logical CPUs, {m['torch_threads']} torch threads, "
                f"{m['memory_gb']} GB)"),
        ("SIMD", f"{m['simd']}, {m['fp32_lanes']} fp32 lanes per FMA; bf16 units: "
                 f"{'yes' if m['bf16_hardware'] else 'no'}"),
        ("clock", f"{m['clock_ghz']} GHz ({m['clock_source']})"),
        ("fp32 peak", f"{m['peak_formula']} = {fmt(m['peak_gflops'])} GFLOP/s"),
        ("software", ", ".join(f"{name} {version}" for name, version in v.items() if version)),
    ]
    return "\n".join(["| | |", "|---|---|", *(f"| {key} | {value} |" for key, value in rows)])


def dice_cell(dice: dict | None) -> str:
    """Dice per region in the column's order WT / TC / ET (whatever order the JSON keeps)."""
    return " / ".join(f"{dice[region]:.4f}" for region in ("WT", "TC", "ET")) if dice else "–"


def failed_row(name: str, error: str, columns: int) -> str:
    """A table row for an option that failed: its name, the last line of its error, empty cells to ``columns``."""
    return f"| {name} | failed: {error.strip().splitlines()[-1][:80]} |" + " |" * (columns - 2)


def network_table(result: dict) -> str:
    lines = [
        f"{result['network']} DynUNet ({result['parameters'] / 1e6:.1f} M parameters), input "
        f"{'×'.join(map(str, result['input_shape']))}: {result['flops'] / 1e12:.3f} TFLOP per pass; SGEMM "
        f"{result['sgemm']['size']}² median {result['sgemm']['median_gflops']:.0f} GFLOP/s "
        f"(range {min(result['sgemm']['gflops']):.0f}–{max(result['sgemm']['gflops']):.0f}); median of "
        f"{result['repeats']} runs ({label(result)}).",
        "",
        "| option | runs as | median s | GFLOP/s | % of SGEMM | % of peak | first call s | peak MB | "
        "max abs Δ logit | max abs Δ p | Dice WT / TC / ET vs eager |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for option, row in result["options"].items():
        if "error" in row:
            lines.append(failed_row(option, row["error"], columns=11))
            continue
        lines.append(
            f"| {option} | {row['backend']} | {fmt(row['median_s'])} | {fmt(row['gflops'])} | "
            f"{fmt(100 * row['fraction_of_sgemm'], 2)} | "
            f"{fmt(100 * row['fraction_of_peak'], 2) if row.get('fraction_of_peak') else '–'} | "
            f"{fmt(row['first_call_s'])} | {row['peak_rss_mb']:.0f} | {row['max_abs_logit_diff']:.1e} | "
            f"{row['max_abs_probability_diff']:.1e} | {dice_cell(row['dice'])} |")
    return "\n".join(lines)


STAGES = ("startup_imports_exit", "loading", "reading", "preprocessing", "network", "postprocessing", "writing", "other")


def segment_table(result: dict) -> str:
    lines = [
        f"{result['network']} DynUNet, phantom case {'×'.join(map(str, result['case_shape']))}, network input "
        f"{result['desired_shape']}³; median of {result['repeats']} rounds ({label(result)}). Seconds per stage "
        "(medians); outside network = 1 − network / wall.",
        "",
        "| contender | runs as | wall s | " + " | ".join(s.replace("_", " ") for s in STAGES) +
        " | outside network | peak MB | speed-up | max abs Δ p vs baseline | Dice WT / TC / ET vs baseline |",
        "|---|---|---|" + "---|" * len(STAGES) + "---|---|---|---|---|",
    ]
    for name, row in result["contenders"].items():
        agreement = row.get("agreement_with_baseline") or {}
        difference = agreement.get("max_abs_probability_diff")
        outside = row.get("outside_network_fraction")
        cells = [name, row.get("backend") or "eager", fmt(row["wall_s"]),
                 *(fmt(row["stages_s"].get(stage)) for stage in STAGES),
                 f"{fmt(100 * outside, 2)} %" if outside is not None else "–", f"{row['peak_rss_mb']:.0f}",
                 fmt(row.get("speedup_over_baseline")), f"{difference:.1e}" if difference is not None else "–",
                 dice_cell(agreement.get("dice"))]
        lines.append("| " + " | ".join(cells) + " |")
    cold = result["cold_auto_run"]
    lines += ["", f"Cold first run of `--backend auto` (empty export cache: ONNX export + agreement check): "
              f"{cold['wall_s']:.1f} s, network stage {cold['stages_s']['network']:.1f} s."]
    for precision, run in (result.get("cold_precision_runs") or {}).items():
        lines.append(f"Cold first run of `--precision {precision}` (compilation"
                     f"{' and int8 quantization on phantoms' if precision == 'int8' else ''}): {run['wall_s']:.1f} s, "
                     f"network stage {run['stages_s']['network']:.1f} s.")
    checks = result.get("checks") or {}
    if "speedup" in checks:  # results written before the precisions were measured
        checks = {"fp32": checks}
    parts = []
    for precision, check in checks.items():
        part = (f"{precision} speed-up ×{check['speedup']:.2f} (needed ×{check['speedup_needed']}): "
                f"{'met' if check['speedup_ok'] else 'not met'}")
        if "probabilities_ok" in check:
            part += f", probabilities within 1e-3 of the baseline: {'yes' if check['probabilities_ok'] else 'no'}"
        parts.append(part + f", outside the network under 10 %: {'yes' if check['outside_network_ok'] else 'no'}")
    if parts:
        lines.append("Checks: " + "; ".join(parts) + ".")
    return "\n".join(lines)


def precision_table(result: dict) -> str:
    lines = [
        f"The demo's model ({result.get('demo_epochs')} epochs), {len(result['held_out_cases'])} held-out phantoms; "
        f"mean Dice per region against the truth and its change from fp32 (allowed: "
        f"±{result['dice_change_allowed']}) ({label(result)}).",
        "",
        "| precision | runs as | Dice WT / TC / ET | change from fp32 | largest per-case change | within bound | "
        "s per case | first case s | peak MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    def per_region(values: dict, form: str) -> str:
        return " / ".join(format(values[region], form) for region in ("WT", "TC", "ET"))

    for precision, row in result["precisions"].items():
        lines.append(
            f"| {precision} | {row['backend']} | {per_region(row['mean_dice'], '.4f')} | "
            f"{per_region(row['dice_change'], '+.4f')} | {per_region(row['largest_case_change'], '.4f')} | "
            f"{'yes' if row['within_bound'] else 'no'} | {fmt(row['median_case_s'])} | {fmt(row['first_case_s'])} | "
            f"{row['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def strategies_table(result: dict) -> str:
    lines = [
        f"{result['network']} DynUNet, phantom case {'×'.join(map(str, result['case_shape']))}, windows "
        f"{result['roi']}³, backend {result['backend']}; median of {result['repeats']} runs; first run: the untimed run "
        f"that exported and checked the network for a new input shape ({label(result)}).",
        "",
        "| strategy | runs as | wall s | network s | first run s | peak MB | max abs Δ p vs whole | "
        "Dice WT / TC / ET vs whole |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result["strategies"].items():
        if "error" in row:
            lines.append(failed_row(name, row["error"], columns=8))
            continue
        agreement = row.get("agreement_with_whole") or {}
        difference = agreement.get("max_abs_probability_diff")
        lines.append(f"| {name} | {row.get('backend')} | {fmt(row['wall_s'])} | {fmt(row['stages_s']['network'])} | "
                     f"{fmt(row['first_run_s'])} | {row['peak_rss_mb']:.0f} | "
                     f"{f'{difference:.1e}' if difference is not None else '–'} | {dice_cell(agreement.get('dice'))} |")
    return "\n".join(lines)


def replace_section(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- results:{name} -->\n)(?:.*?\n)?(<!-- /results:{name} -->)", re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{README} has no <!-- results:{name} --> ... <!-- /results:{name} --> markers")
    return pattern.sub(lambda match: match.group(1) + body + "\n" + match.group(2), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="use the quick-mode results")
    args = parser.parse_args(argv)
    text = README.read_text()
    renderers = {"network": network_table, "segment": segment_table, "strategies": strategies_table,
                 "precision": precision_table}
    found = {name: load(name, args.quick) for name in renderers}
    available = [result for result in found.values() if result]
    if not available:
        raise SystemExit(f"no results in {benchlib.RESULTS}; run the benchmarks first")
    text = replace_section(text, "machine", machine_table(available[0]))
    for name, result in found.items():
        if result:
            text = replace_section(text, name, renderers[name](result))
    README.write_text(text)
    print(f"updated {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
