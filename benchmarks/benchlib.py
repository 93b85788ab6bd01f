"""Shared pieces of the benchmark scripts: the machine and its peak, timing, child processes, results files.

Every measurement that is compared runs in its own fresh child process, so that each option has its own peak
memory (``ru_maxrss`` of that process), its own thread pools and no warm state left by another option.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
BRATS_CONFIG = HERE / "brats2020_config.json"
# Networks measured: the BraTS 2020 example (24.9 M parameters), the 5.6 M "small" DynUNet of the issue and the
# 351 k "tiny" one of ORIGINAL.md §6 (quick runs).
NETWORK_FILTERS = {"brats": None, "small": [16, 32, 64, 128, 256], "tiny": [8, 16, 32, 64]}


# ------------------------------------------------------------------------------------------------ machine

def cpu_flags() -> set[str]:
    from BratsUNetLib.hardware.cpu import cpu_flags as library_flags  # what the library's choices read

    return set(library_flags())


def _cpuinfo_field(name: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def clock_ghz() -> tuple[float | None, str]:
    """The CPU clock in GHz and where it came from (the maximum frequency when the kernel exposes it)."""
    try:
        khz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text())
        return khz / 1e6, "cpufreq max"
    except (OSError, ValueError):
        pass
    mhz = _cpuinfo_field("cpu MHz")
    return (float(mhz) / 1000, "/proc/cpuinfo cpu MHz") if mhz else (None, "unknown")


def machine(fma_units: int = 2, clock_override: float | None = None) -> dict:
    """The CPU, its fp32 peak (threads × FMA units × SIMD lanes × 2 FLOP × GHz) and the software versions.

    The number of FMA units per core cannot be read from the CPU; 2 (both Zen 3 and Intel server cores have two
    FMA pipes) is the default and is recorded with the result.
    """
    import torch

    from BratsUNetLib.hardware.cpu import has_bf16_units

    flags = cpu_flags()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    ghz, clock_source = (clock_override, "given") if clock_override else clock_ghz()
    threads = torch.get_num_threads()
    peak = threads * fma_units * lanes * 2 * ghz if ghz else None
    return {
        "cpu": _cpuinfo_field("model name") or platform.processor(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": threads,
        "simd": "avx512" if lanes == 16 else "avx2" if lanes == 8 else "sse",
        "fp32_lanes": lanes,
        "fma_units_per_core": fma_units,
        "clock_ghz": ghz,
        "clock_source": clock_source,
        "peak_gflops": peak,
        "peak_formula": f"{threads} threads × {fma_units} FMA units × {lanes} fp32 lanes × 2 FLOP × {ghz} GHz",
        "bf16_hardware": has_bf16_units(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "versions": versions(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in ("torch", "monai", "numpy", "nibabel", "onnxruntime", "openvino", "onnx", "onnxscript"):
        try:  # the distribution's metadata: importing openvino here would send its usage telemetry
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    from BratsUNetLib import __version__

    found["bratsunet"] = __version__
    return found


def sgemm_gflops(size: int, repeats: int) -> list[float]:
    """fp32 matrix product C = A·B of ``size``² matrices through torch (MKL / oneDNN): the practical ceiling."""
    import torch

    a = torch.randn(size, size)
    b = torch.randn(size, size)
    torch.mm(a, b)  # warm-up: thread pool and library dispatch
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    return rates


# ------------------------------------------------------------------------------------------------ networks

def brats_config() -> dict:
    return json.loads(BRATS_CONFIG.read_text())


def model_block(network: str) -> dict:
    """The ``model`` block of the BraTS 2020 config, or the same DynUNet with fewer / narrower levels."""
    block = dict(brats_config()["model"])
    filters = NETWORK_FILTERS[network]
    if filters:
        levels = len(filters)
        block.update(filters=filters, strides=block["strides"][:levels], kernel_size=block["kernel_size"][:levels],
                     upsample_kernel_size=block["upsample_kernel_size"][:levels - 1])
    return block


def benchmark_config(network: str, **dataset: object) -> dict:
    """The BraTS 2020 config with ``network``'s model block and ``dataset`` keys replaced (None removes a key)."""
    config = brats_config()
    config["model"] = model_block(network)
    merged = {**config["dataset"], **dataset}
    config["dataset"] = {key: value for key, value in merged.items() if value is not None}
    return config


def seeded_network(block: dict, seed: int = 0):
    """The network of ``block`` with weights drawn from ``seed`` (identical in every process), in eval mode."""
    import torch

    from BratsUNetLib.models.networks import build_network

    torch.manual_seed(seed)
    return build_network(block).eval()


def count_flops(block: dict, shape: Sequence[int]) -> int:
    """FLOPs of one forward pass on ``shape`` (N, C, X, Y, Z), counted by torch.utils.flop_counter on the meta
    device (no memory, no compute). Convolutions count 2 FLOP per multiply-add."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from BratsUNetLib.models.networks import build_network

    with torch.device("meta"):
        network = build_network(block).eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            network(torch.empty(tuple(shape)))
    return counter.get_total_flops()


# ------------------------------------------------------------------------------------------------ measuring

def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (``VmRSS``, ``VmHWM``) in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def own_peak_rss_mb() -> float:
    """Peak resident memory of this process so far.

    ``VmHWM`` rather than ``getrusage``/``wait4``'s ``ru_maxrss``: Linux carries ``ru_maxrss`` across
    ``fork`` + ``exec``, so a child started by a large parent would report at least the parent's size.
    """
    return _status_mb("VmHWM")


def own_rss_mb() -> float:
    return _status_mb("VmRSS")


def run_measured(argv: Sequence[str], env: dict | None = None, cwd: Path | None = None) -> dict:
    """Run a fresh process; return its wall time (s, start to exit), exit code and output.

    Raises RuntimeError with the end of its stderr when it fails. Children report their own peak memory
    (:func:`own_peak_rss_mb`) in the JSON line they print.
    """
    start = time.perf_counter()
    process = subprocess.run([str(arg) for arg in argv], capture_output=True, text=True,
                             env={**os.environ, **(env or {})}, cwd=cwd or ROOT)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({process.returncode}):\n{process.stderr[-3000:]}")
    return {"wall_s": wall, "returncode": process.returncode, "stdout": process.stdout, "stderr": process.stderr}


def last_json_line(text: str) -> dict:
    """The last line of ``text`` that is a JSON object (children print their result there)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON result in the output:\n{text[-2000:]}")


def python() -> str:
    return sys.executable


def case_dice(result, label_path: str) -> dict[str, float]:
    """Dice per region (WT, TC, ET) of a ``segment_case`` result against the reference label file."""
    from BratsUNetLib.data.images import read_label, voxel_spacing
    from BratsUNetLib.data.labels import REGIONS
    from BratsUNetLib.evaluation.metrics import region_metrics

    truth = read_label(label_path, result.labels.shape, result.affine)
    metrics = region_metrics(result.labels, truth, voxel_spacing(result.affine))
    return {region: metrics[region]["dice"] for region in REGIONS}


# ------------------------------------------------------------------------------------------------ results

def write_results(name: str, payload: dict, quick: bool) -> Path:
    """Write ``results/<name>[-quick].json`` (indented, keys in the order measured) and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path


def fmt(value: float | None, digits: int = 3) -> str:
    """A table cell: ``value`` with ``digits`` significant digits, or an en dash for missing values."""
    if value is None:
        return "–"
    return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
