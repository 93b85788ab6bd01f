"""Reduced precision (BratsUNetLib/inference/backends.py, openvino_engine.py), tested in a pytest process of its own.

The tests themselves are in ``precision_checks.py``; they load OpenVINO and NNCF, whose native thread pools must
not live in the main test process (see ``test_backends.py``).
"""

import subprocess
import sys
from pathlib import Path


def test_precision_in_its_own_process():
    checks = Path(__file__).with_name("precision_checks.py")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(checks)],
                            capture_output=True, text=True, timeout=1200, cwd=Path(__file__).parents[3])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
