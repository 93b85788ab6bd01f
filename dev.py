#!/usr/bin/env python3
"""Set up BratsUNet in a virtual environment in this checkout, then run the demo or the tests.

    python3 dev.py demo [demo options]   # main job: phantoms -> training -> segmentation -> report
    python3 dev.py test [pytest options] # the whole test suite

The first run creates `.venv/` and installs the library with its test and fast-inference extras (torch pinned by
`constraints-dev.txt`); later runs reinstall only when `pyproject.toml` or the pins change.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".bratsunet-install-stamp"
INSTALL_INPUTS = ("pyproject.toml", "constraints-dev.txt")


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def install_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in INSTALL_INPUTS:
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_environment() -> Path:
    if sys.version_info < (3, 10):
        sys.exit(f"BratsUNet needs Python 3.10 or newer; this is {sys.version.split()[0]}.")
    if not venv_python().exists():
        print(f"Creating {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    fingerprint = install_fingerprint()
    if not STAMP.exists() or STAMP.read_text() != fingerprint:
        print("Installing BratsUNet and its test dependencies into .venv ...", flush=True)
        pip = [str(venv_python()), "-m", "pip", "--disable-pip-version-check", "-q"]
        subprocess.run(pip + ["install", "-c", "constraints-dev.txt", "-e", ".[test,fast]"], cwd=ROOT, check=True)
        STAMP.write_text(fingerprint)
    return venv_python()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "setup"):
        print(__doc__)
        return 2
    python = str(ensure_environment())
    job, rest = argv[0], argv[1:]
    if job == "setup":
        return 0
    if job == "demo":
        command = [python, "-m", "BratsUNetLib", "demo", *rest]
    else:
        command = [python, "-m", "pytest", *rest]
    return subprocess.run(command, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
