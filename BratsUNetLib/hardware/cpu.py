"""What the CPU this process runs on can compute fast, read at run time (never assumed from one machine).

The development and user machines differ (Intel Xeon with AVX-512 and AMX, AMD Zen 3 with AVX2 only, AMD Zen 4
with AVX-512 and AVX512-BF16), and reduced precision only pays where the CPU has units for it: bf16 without
AVX512-BF16 or AMX is emulated and slower than fp32, which is why ``--precision bf16`` is refused there.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

#: CPU flags (Linux ``/proc/cpuinfo`` names) of units that compute bf16 natively: AVX512-BF16 and AMX-BF16 on
#: x86, the ``bf16`` extension on Arm.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first processor in a ``/proc/cpuinfo`` text (x86 ``flags``, Arm ``Features``)."""
    name, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model") and not name:
            name = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return name, flags


@functools.cache
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, flags) of this machine; empty where the system has no ``/proc/cpuinfo`` (macOS, Windows)."""
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return "", frozenset()


def cpu_name() -> str:
    """The CPU's model name (``Intel(R) Xeon(R) Processor``), or the platform's processor string."""
    return _cpuinfo()[0] or platform.processor() or platform.machine() or "this CPU"


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux names them; empty where they cannot be read."""
    return _cpuinfo()[1]


def has_bf16_units() -> bool:
    """Whether the CPU computes bf16 natively (:data:`BF16_FLAGS`).

    Where no flags can be read (not Linux) OpenVINO's own detection is asked when OpenVINO is installed; it
    reports ``BF16`` under the same condition.
    """
    flags = cpu_flags()
    if flags:
        return bool(flags & BF16_FLAGS)
    try:
        import openvino  # only where /proc/cpuinfo is missing: seconds to import

        return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001  # not installed or not answering: no evidence of bf16 units
        return False

