"""Fixtures for the Slicer module's tests: a real slicer-core scene with the module logics, the module file
imported as Slicer imports it (with the desktop-only pieces stood in, see ``standins.py``), and generated data."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
MODULE_DIR = HERE.parents[1] / "BratsUNet"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(MODULE_DIR))

import standins

standins.install()

FAKE_WORKER = HERE / "fake_worker.py"
CASE_SHAPE = (32, 32, 32)


@pytest.fixture
def scene():
    """An empty scene with colour tables and the Volumes, Segmentations, SubjectHierarchy, Tables and Plots
    logics; it is ``slicer.mrmlScene`` during the test."""
    scene, _logics = standins.new_scene()
    yield scene
    scene.Clear(1)


@pytest.fixture
def module(scene):
    """The module file ``BratsUNet/BratsUNet.py``, imported as Slicer does (its folder on ``sys.path``)."""
    return importlib.import_module("BratsUNet")


@pytest.fixture(scope="module")
def worker():
    """One real worker process for a test module: torch is imported once, as in a Slicer session."""
    from BratsUNetSlicer.worker import WorkerClient

    client = WorkerClient()
    yield client
    client.close()


@pytest.fixture(scope="module")
def training_worker():
    """A second real worker for a test module's trainings (the module's logic trains beside segmenting)."""
    from BratsUNetSlicer.worker import WorkerClient

    client = WorkerClient()
    yield client
    client.close()


@pytest.fixture
def logic(module, worker, training_worker):
    """The module's logic, segmenting through :func:`worker` and training through :func:`training_worker`."""
    logic = module.BratsUNetLogic()
    logic.worker, logic.trainingWorker = worker, training_worker
    return logic


@pytest.fixture(autouse=True, scope="session")
def _no_worker_outlives_the_tests():
    yield
    from BratsUNetSlicer.worker import close_shared_workers

    close_shared_workers()


@pytest.fixture
def fake_worker_command():
    """The command line of a stand-in worker that speaks the job protocol (see ``fake_worker.py``)."""
    return [sys.executable, str(FAKE_WORKER)]


@pytest.fixture(scope="session")
def phantom_cases(tmp_path_factory):
    """Generated cases on a 32³ grid, by name: BraTS 2020's LPS affine, a left-handed one, and a second case.

    Each value maps modality (and "seg") to a NIfTI path.
    """
    from BratsUNetLib.phantoms.generate import generate_case, write_case

    folder = tmp_path_factory.mktemp("cases")
    return {
        "BraTS20_Training_001": write_case(generate_case(CASE_SHAPE, seed=1), folder, "BraTS20_Training_001"),
        "BraTS20_Training_002": write_case(generate_case(CASE_SHAPE, seed=2, left_handed=True), folder,
                                           "BraTS20_Training_002"),
    }


@pytest.fixture(scope="session")
def small_model(tmp_path_factory):
    """A random-weight "small" DynUNet checkpoint for 32³ inputs (deterministic outputs)."""
    from BratsUNetSlicer.testing import small_checkpoint

    return small_checkpoint(tmp_path_factory.mktemp("model") / "model.pth", patch_size=32)
