#!/usr/bin/env bash
# Run every benchmark, then refresh the inference tables in benchmarks/README.md.
#   benchmarks/run_all.sh           full runs (BraTS 2020 DynUNet, BraTS-size case; 1–2 hours on 2 cores)
#   benchmarks/run_all.sh --quick   short runs that check the scripts work (minutes; numbers not to be quoted)
# Run it on a quiet machine: other work on the CPU changes the times by up to 2x.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
for bench in bench_network bench_segment bench_strategies bench_training bench_refine bench_clicks bench_precision; do
    echo "== $bench $*"
    "$PYTHON" "benchmarks/$bench.py" "$@"
done
"$PYTHON" benchmarks/report.py "$@"
