"""torch and the library's other Python packages: what is missing, installing it on first use, the device.

Nothing here imports torch unless asked for the device: whether a package is installed is read from its
metadata, so the panel opens (and says what is missing) before anything is installed. torch comes from
Slicer's PyTorch extension (which picks the build for the machine's GPU); the rest through pip, with Slicer's
own numpy pinned so that an install never replaces it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from BratsUNetLib.errors import BratsUNetError

TORCH_REQUIREMENT = ">=2.2"
# What the library needs besides torch (pyproject.toml's dependencies and its [fast] extra, so that the panel runs
# the network the way the command line does), as pip requirements keyed by import name. Testing/slicer checks that
# they are pyproject.toml's.
PIP_REQUIREMENTS = {
    "monai": "monai>=1.4,<2",
    "nibabel": "nibabel>=5.0",
    "scipy": "scipy>=1.10",
    "tqdm": "tqdm>=4.60",
    "matplotlib": "matplotlib>=3.7",
    "pooch": "pooch>=1.8",
    "platformdirs": "platformdirs>=3.0",
    "filelock": "filelock>=3.8",
    "nilearn": "nilearn>=0.10",
    "onnx": "onnx>=1.17",
    "onnxscript": "onnxscript>=0.5",
    "onnxruntime": "onnxruntime>=1.20",
    "openvino": "openvino>=2025.0",
    "nncf": "nncf>=2.14",
}
# Packages that Slicer ships and that an install must never replace.
PINNED = ("numpy", "SimpleITK", "requests")


def missing_packages() -> list[str]:
    """Import names of the packages that are not installed (``torch`` first), without importing any."""
    names = ["torch", *PIP_REQUIREMENTS]
    return [name for name in names if importlib.util.find_spec(name) is None]


def torch_version() -> str | None:
    """The installed torch version, read from its metadata (no import), or None."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def detected_device() -> str:
    """The device ``auto`` picks and the torch version, e.g. ``"CUDA GPU (NVIDIA A100), torch 2.4.1"``.

    Imports torch, so call it when the user looks at the panel, not when the module loads.
    """
    version = torch_version()
    if version is None or "torch" in missing_packages():
        return "PyTorch is not installed yet (it is installed on first use)"
    import torch  # on use: the panel opens before torch is installed

    if torch.cuda.is_available():
        device = f"CUDA GPU ({torch.cuda.get_device_name(0)})"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = "Apple GPU (MPS)"
    else:
        device = "CPU"
    return f"{device}, torch {version}"


def device_argument(choice: str) -> str:
    """The ``bratsunet --device`` value for the panel's choice: ``gpu`` is CUDA, or MPS on a Mac."""
    if choice == "gpu":
        return "mps" if sys.platform == "darwin" else "cuda"
    return choice


def install(confirm: Callable[[str], bool]) -> bool:
    """Install what is missing after one ``confirm(message)``; False when the user declined.

    Raises :class:`~BratsUNetLib.errors.BratsUNetError` with one line when an install fails (the panel shows it;
    nothing is half-configured because each package manager installs atomically per package).
    """
    missing = missing_packages()
    if not missing:
        return True
    if not confirm(f"BratsUNet needs these Python packages, which are not installed yet: {', '.join(missing)}.\n"
                   "Install them now? This downloads several hundred MB and may take a few minutes."):
        return False
    import slicer  # only an install needs the application (its pip and the PyTorch extension)

    if "torch" in missing:
        try:  # the PyTorch extension's module, present only where that extension is installed
            import PyTorchUtils
        except ImportError:
            raise BratsUNetError("BratsUNet needs the PyTorch extension to install torch; install 'PyTorch' from the "
                               "Extensions Manager and restart Slicer.") from None
        try:
            installed = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                                      torchVersionRequirement=TORCH_REQUIREMENT)
        except Exception as exc:  # the extension's own failure, whatever its type
            raise BratsUNetError(f"Installing PyTorch failed ({_first_line(exc)}); see the application log, or "
                                 "install it from the PyTorch module.") from None
        if installed is None:
            raise BratsUNetError("Installing PyTorch failed; see the application log, or install it from the "
                                 "PyTorch module.")
    requirements = [PIP_REQUIREMENTS[name] for name in missing if name in PIP_REQUIREMENTS]
    if requirements:
        pins = [f"{name}=={importlib.metadata.version(name)}" for name in PINNED if _installed(name)]
        with tempfile.TemporaryDirectory(prefix="BratsUNet-pip-") as folder:
            constraints = Path(folder) / "constraints.txt"
            constraints.write_text("\n".join(pins) + "\n")
            try:
                slicer.util.pip_install([*requirements, "-c", str(constraints)])
            except Exception as exc:  # pip's failure (no network, no wheel, a conflict) as one line
                raise BratsUNetError(f"Installing {', '.join(requirements)} failed ({_first_line(exc)}); check the "
                                     "network connection and the application log, then try again.") from None
    importlib.invalidate_caches()
    return True


def _first_line(error: BaseException) -> str:
    """An exception's message as one short line (installers' messages are often pages long)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False
