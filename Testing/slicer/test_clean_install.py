"""The self-test in a fresh Slicer: a Python with only slicer-core installs what BratsUNet needs, then passes.

This is the one test that installs packages from the package index (as a user's first Apply does); it builds a
new virtual environment, so it takes a minute or two.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "BratsUNet"))

from BratsUNetSlicer import dependencies  # noqa: E402

from clean_selftest import HEAVY  # noqa: E402  (Testing/slicer is on sys.path, see conftest.py)


def test_self_test_installs_what_it_needs_and_passes_in_a_python_with_only_slicer_core(tmp_path):
    environment = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = str(environment / "bin" / "python")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), BRATSUNET_CACHE_DIR=str(tmp_path / "exports"),
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    # The slicer-core of the development environment, so that the scene code is the one the suite tests.
    subprocess.run([python, "-m", "pip", "-q", "install", "--no-compile",
                    f"slicer-core=={importlib.metadata.version('slicer-core')}"], env=env, check=True, timeout=1200)
    report_path = tmp_path / "report.json"
    run = subprocess.run([python, str(HERE / "clean_selftest.py"), str(report_path)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=1800, check=False)  # a hang guard, not a measure
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    report = json.loads(report_path.read_text())
    assert report["missing_before"] == list(HEAVY)  # the Python really was bare
    assert report["heavy_after_import"] == []  # the module file loaded before anything was installed
    assert report["requests"]["torch"] == [[f"torch{dependencies.TORCH_REQUIREMENT}"]]  # the PyTorch extension's way
    missing = report["module_missing_before"]  # what the module found missing (slicer-core brings matplotlib)
    assert {"torch", "monai", "nibabel", "scipy", "openvino", "onnxruntime", "nilearn"} <= set(missing)
    [pip_call] = report["requests"]["pip"]  # the rest in one pip call, Slicer's numpy kept by a constraint
    assert {dependencies.PIP_REQUIREMENTS[name] for name in missing if name != "torch"} <= set(pip_call)
    assert "-c" in pip_call
    assert report["passed"] and report["missing_after"] == []
