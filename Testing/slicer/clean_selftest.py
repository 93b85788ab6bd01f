"""The module's self-test as a fresh Slicer runs it, for a Python that has nothing but slicer-core installed.

Run by ``test_clean_install.py`` with the interpreter of a new virtual environment: the module file is imported
before any of the library's packages exist, then ``slicer.selfTests["BratsUNet"]()`` installs them through the
module's own installer and segments the sample case. Writes what happened as JSON to the path given as the only
argument (packages missing before, heavy modules loaded by the import, the installs requested, packages missing
after) and exits non-zero when the self-test fails.

Besides ``standins.py``, two desktop pieces are stood in here because the installer calls them: the PyTorch
extension's ``PyTorchUtilsLogic.installTorch`` (Slicer's picks the build for the GPU; here the CPU wheel pinned
in ``constraints-dev.txt``) and ``slicer.util.pip_install`` (Slicer's runs its own Python's pip; here this
interpreter's). Both run pip for real.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT / "BratsUNet")]

import slicer  # noqa: E402  (after the path is set)
import slicer.util  # noqa: E402
import standins  # noqa: E402

HEAVY = ("torch", "monai", "nibabel", "scipy", "nilearn", "openvino", "onnxruntime", "platformdirs", "pooch")
requests: dict[str, list[list[str]]] = {"torch": [], "pip": []}


def pip_install(arguments: list[str]) -> None:
    # --no-compile: byte-compiling torch's files is most of an install's time and changes nothing that is tested.
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "install", "--no-compile",
                    *arguments], check=True)


class PyTorchUtilsLogic:
    def installTorch(self, askConfirmation: bool = True, torchVersionRequirement: str = "", **kwargs: object):
        requirement = f"torch{torchVersionRequirement}"
        requests["torch"].append([requirement])
        pip_install([requirement, "-c", str(ROOT / "constraints-dev.txt")])
        importlib.invalidate_caches()
        return importlib.import_module("torch")


def slicer_pip_install(requirements: str | list[str]) -> None:
    arguments = requirements.split() if isinstance(requirements, str) else list(requirements)
    requests["pip"].append(arguments)
    pip_install(arguments)


def main(report_path: str) -> int:
    report: dict[str, object] = {
        "missing_before": [name for name in HEAVY if importlib.util.find_spec(name) is None]}
    standins.install()
    standins.new_scene()
    sys.modules["PyTorchUtils"] = types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic)
    slicer.util.pip_install = slicer_pip_install

    module = importlib.import_module("BratsUNet")  # as Slicer loads it: before anything is installed
    report["heavy_after_import"] = sorted(name for name in HEAVY if name in sys.modules)
    report["module_missing_before"] = importlib.import_module("BratsUNetSlicer.dependencies").missing_packages()
    module.BratsUNet(types.SimpleNamespace())  # registers slicer.selfTests["BratsUNet"]
    passed = False
    try:
        slicer.selfTests["BratsUNet"]()
        passed = True
    finally:
        importlib.invalidate_caches()
        report.update(passed=passed, requests=requests,
                      missing_after=[name for name in HEAVY if importlib.util.find_spec(name) is None])
        Path(report_path).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
