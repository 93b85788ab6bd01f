"""Installing torch and MONAI on first use: one confirmation, torch through the PyTorch extension, the rest
through pip without touching Slicer's own numpy. Package managers are replaced by recorders here."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import tomllib
import types
from pathlib import Path

import pytest
import slicer
from BratsUNetSlicer import dependencies


@pytest.fixture
def missing(monkeypatch):
    """Pretend that the packages named in the returned set are not installed."""
    absent: set[str] = set()
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name in absent else real_find_spec(name, *args))
    return absent


@pytest.fixture
def installers(monkeypatch):
    """Record what would be installed: pip requirements and PyTorch extension calls."""
    calls: dict[str, list] = {"pip": [], "torch": []}

    def pip_install(requirements):
        constraints = requirements[requirements.index("-c") + 1]
        with open(constraints) as stream:  # read now: the file is temporary
            calls["pip"].append([*requirements, stream.read().split()])

    monkeypatch.setattr(slicer.util, "pip_install", pip_install)

    class PyTorchUtilsLogic:
        def installTorch(self, askConfirmation, torchVersionRequirement):
            calls["torch"].append((askConfirmation, torchVersionRequirement))
            return object()

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic))
    return calls


def test_nothing_is_asked_or_installed_when_everything_is_there(missing, installers):
    asked = []
    assert dependencies.install(asked.append) is True
    assert asked == [] and installers == {"pip": [], "torch": []}


def test_one_confirmation_then_torch_from_the_extension_and_monai_from_pip(missing, installers):
    missing.update({"torch", "monai"})
    asked = []
    assert dependencies.install(lambda text: asked.append(text) or True) is True
    assert len(asked) == 1 and "torch, monai" in asked[0]
    assert installers["torch"] == [(False, dependencies.TORCH_REQUIREMENT)]
    (requirements,) = installers["pip"]
    assert requirements[0] == "monai>=1.4,<2" and requirements[1] == "-c"
    assert f"numpy=={importlib.metadata.version('numpy')}" in requirements[3]


def test_declining_installs_nothing(missing, installers):
    missing.add("monai")
    assert dependencies.install(lambda text: False) is False
    assert installers == {"pip": [], "torch": []}


def test_the_logic_refuses_to_run_without_the_dependencies(module, scene, missing, installers, monkeypatch):
    from BratsUNetLib.errors import BratsUNetError

    missing.add("monai")
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda text: False, raising=False)
    with pytest.raises(BratsUNetError, match="needs PyTorch and MONAI"):
        module.BratsUNetLogic().segment(model="model.pth")


def test_the_gpu_choice_names_the_platforms_gpu(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    assert dependencies.device_argument("gpu") == "cuda"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert dependencies.device_argument("gpu") == "mps"
    assert dependencies.device_argument("cpu") == "cpu"


def test_detected_device_names_the_device_and_torch_version():
    import torch

    text = dependencies.detected_device()
    assert text.endswith(f"torch {importlib.metadata.version('torch')}")
    assert text.startswith("CUDA GPU" if torch.cuda.is_available() else "CPU")


def test_a_failed_pip_install_is_one_line_bratsuneterror(missing, installers, monkeypatch):
    from BratsUNetLib.errors import BratsUNetError

    def failing_pip_install(requirements):
        raise RuntimeError("pip failed\nERROR: Could not find a version that satisfies the requirement monai\n...")

    monkeypatch.setattr(slicer.util, "pip_install", failing_pip_install)
    missing.add("monai")
    with pytest.raises(BratsUNetError) as raised:
        dependencies.install(lambda text: True)
    assert "\n" not in str(raised.value) and "monai" in str(raised.value) and "try again" in str(raised.value)


def test_a_failed_torch_install_is_one_line_bratsuneterror(missing, installers, monkeypatch):
    from BratsUNetLib.errors import BratsUNetError

    class FailingLogic:
        def installTorch(self, askConfirmation, torchVersionRequirement):
            raise ValueError("no wheel\nfor this platform")

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=FailingLogic))
    missing.add("torch")
    with pytest.raises(BratsUNetError) as raised:
        dependencies.install(lambda text: True)
    assert "\n" not in str(raised.value) and "Installing PyTorch failed" in str(raised.value)


def test_the_panel_installs_what_the_command_line_has_fast_backends_included():
    """The library's dependencies and its [fast] extra, as pyproject.toml names them (torch aside: the PyTorch
    extension installs it; numpy aside: Slicer's own is kept), so that the panel segments as fast as the command line and its self-test's phantoms
    find nilearn."""
    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["fast"]]
    shipped = ("torch", *dependencies.PINNED)
    assert sorted(requirement for requirement in wanted if not requirement.startswith(shipped)) == sorted(
        dependencies.PIP_REQUIREMENTS.values())
    assert dependencies.TORCH_REQUIREMENT in next(r for r in project["dependencies"] if r.startswith("torch"))
