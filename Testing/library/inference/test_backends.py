"""The execution backends (BratsUNetLib/inference/backends.py), tested in a pytest process of their own.

The tests themselves are in ``backends_checks.py``. OpenVINO and ONNX Runtime keep native thread pools alive in
the process that loads them; loaded in the main test process they crashed it (SIGSEGV) minutes later, in
unrelated tests, so they run apart and this test reports their outcome.
"""

import subprocess
import sys
from pathlib import Path


def test_backends_in_their_own_process():
    checks = Path(__file__).with_name("backends_checks.py")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(checks)],
                            capture_output=True, text=True, timeout=1200, cwd=Path(__file__).parents[3])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
