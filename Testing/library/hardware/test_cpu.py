"""The CPU's units, read from /proc/cpuinfo at run time (BratsUNetLib/hardware/cpu.py)."""

from pathlib import Path

import pytest

from BratsUNetLib.hardware import cpu

XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu
"""
ZEN3 = "processor\t: 0\nmodel name\t: AMD EPYC 7763 64-Core Processor\nflags\t\t: fpu sse2 avx2 fma\n"
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd asimddp bf16 i8mm\n"


def test_the_first_processors_name_and_flags_are_read():
    assert cpu.parse_cpuinfo(XEON) == ("Intel(R) Xeon(R) Processor",
                                       frozenset("fpu sse2 avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 "
                                                 "amx_tile amx_int8".split()))
    assert cpu.parse_cpuinfo(ARM)[1] >= {"bf16", "asimd"}
    assert cpu.parse_cpuinfo("") == ("", frozenset())


def test_bf16_units_follow_the_flags(monkeypatch):
    for text, expected in ((XEON, True), (ZEN3, False), (ARM, True)):
        monkeypatch.setattr(cpu, "_cpuinfo", lambda text=text: cpu.parse_cpuinfo(text))
        assert cpu.has_bf16_units() is expected
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: cpu.parse_cpuinfo(ZEN3))
    assert cpu.cpu_name() == "AMD EPYC 7763 64-Core Processor"


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="no /proc/cpuinfo on this system")
def test_this_machine_is_read_at_run_time():
    name, flags = cpu.parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    assert cpu.cpu_flags() == flags and cpu.cpu_name() == (name or cpu.cpu_name())
