"""Fixtures of the reliability tests: one generated case, tiny models, and the command line run in-process.

The Slicer-side fixtures (a real slicer-core scene, the module file imported as Slicer imports it) are those of
``Testing/slicer/conftest.py``, reused here rather than copied; they are available only where slicer-core is
installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from reliability_support import MODALITIES, TINY_CONFIG

HAS_SLICER = importlib.util.find_spec("slicer") is not None

if HAS_SLICER:
    def _slicer_fixtures():
        """``Testing/slicer/conftest.py`` as a module (pytest's import mode gives each folder its own conftest)."""
        spec = importlib.util.spec_from_file_location("slicer_test_fixtures", HERE.parent / "slicer" / "conftest.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    _fixtures = _slicer_fixtures()
    scene = _fixtures.scene
    module = _fixtures.module
    worker = _fixtures.worker
    training_worker = _fixtures.training_worker
    logic = _fixtures.logic


@pytest.fixture(scope="session")
def case_files(tmp_path_factory) -> dict[str, Path]:
    """One generated BraTS-style case on a 32³ grid: modality (and "seg") -> NIfTI path. Read-only for tests."""
    from BratsUNetLib.phantoms.generate import generate_case, write_case

    folder = tmp_path_factory.mktemp("case")
    return write_case(generate_case((32, 32, 32), seed=7), folder, "BraTS20_Training_007")


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random-weight models (seeded), by name:

    - ``model``: a BratsUNet checkpoint of :data:`TINY_CONFIG` (FLAIR, T1, T1ce, T2 -> WT, TC, ET);
    - ``original``: the same weights as the original 3DUnetCNN saved them (a bare state_dict), with ``config``,
      its config file;
    - ``five_channels``: a BratsUNet checkpoint whose network takes a fifth input, ``adc``.
    """
    import torch

    from BratsUNetLib.models.checkpoint import save_checkpoint
    from BratsUNetLib.config.loading import load_config
    from BratsUNetLib.models.networks import build_network

    folder = tmp_path_factory.mktemp("models")
    config = load_config(TINY_CONFIG)
    torch.manual_seed(0)
    network = build_network(config["model"])
    save_checkpoint(folder / "model.pth", network, config=config, channels=list(MODALITIES))
    torch.save(network.state_dict(), folder / "original.pth")
    (folder / "config.json").write_text(json.dumps(TINY_CONFIG))
    five = load_config({**TINY_CONFIG, "model": {**TINY_CONFIG["model"], "in_channels": 5}})
    save_checkpoint(folder / "five_channels.pth", build_network(five["model"]), config=five,
                    channels=[*MODALITIES, "adc"])
    return {"model": folder / "model.pth", "original": folder / "original.pth", "config": folder / "config.json",
            "five_channels": folder / "five_channels.pth"}


@pytest.fixture
def cli():
    """Run ``bratsunet ARGV`` in this process: ``(exit status, stdout, stderr lines)``."""
    from BratsUNetLib.cli.main import main

    def run(argv: list[str]) -> tuple[int, str, list[str]]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*argv, "--progress", "none"])
        return code, out.getvalue(), [line for line in err.getvalue().splitlines() if line.strip()]

    return run


@pytest.fixture
def restore_permissions(tmp_path):
    """After the test, make every folder below ``tmp_path`` writable again, so pytest can remove what a test
    made read-only."""
    yield
    for path in tmp_path.rglob("*"):
        if path.is_dir():
            path.chmod(0o755)
