"""The models the panel offers: how the selector names them, and what describing a model costs Slicer's process."""

from __future__ import annotations

import os
import shutil

import pytest
from BratsUNetSlicer import scene_io
from BratsUNetSlicer.models import ModelRegistry
from BratsUNetSlicer.worker import WorkerClient
from jobwait import finish

CASE = "BraTS20_Training_001"


def test_selector_labels_tell_apart_models_trained_in_different_folders(tmp_path):
    registry = ModelRegistry()
    registry.add(tmp_path / "run_a" / "bratsunet_slicer" / "model_best.pth", trained_here=True)
    registry.add(tmp_path / "run_b" / "bratsunet_slicer" / "model_best.pth", trained_here=True)
    registry.add(tmp_path / "models" / "brats2020.pth", config=tmp_path / "models" / "config.json")
    registry.add(tmp_path / "run_a" / "bratsunet_slicer" / "model_best.pth")  # the same file again: listed once

    assert [label for _entry, label in registry.labelled_entries()] == [
        "run_a/bratsunet_slicer/model_best.pth (trained in this session)",
        "run_b/bratsunet_slicer/model_best.pth (trained in this session)",
        "models/brats2020.pth",
    ]


@pytest.fixture
def stand_in_logic(module, fake_worker_command):
    """The module's logic with the stand-in worker, which answers ``segment`` without reading the model."""
    logic = module.BratsUNetLogic(fake_worker_command)
    # A stand-in of its own (not the process's shared one, which tests patch): it answers both kinds of job.
    logic.worker = logic.trainingWorker = WorkerClient(fake_worker_command)
    yield logic
    logic.worker.close()


@pytest.fixture
def checkpoint_use(monkeypatch):
    """Every ``torch.load`` and every network build in this (Slicer's) process from now on, as lists: the files
    loaded and the model blocks built."""
    import torch

    from BratsUNetLib.models import checkpoint, networks

    used = {"reads": [], "builds": []}
    real_load, real_build = torch.load, networks.build_network

    def counting_load(file, *args, **kwargs):
        used["reads"].append(os.fspath(file) if isinstance(file, (str, os.PathLike)) else file)
        return real_load(file, *args, **kwargs)

    def counting_build(model_block, **kwargs):
        used["builds"].append(model_block)
        return real_build(model_block, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    for owner in (networks, checkpoint):  # checkpoint holds its own reference to the function
        monkeypatch.setattr(owner, "build_network", counting_build)
    return used


def test_one_apply_reads_the_checkpoint_once_and_builds_no_network(scene, stand_in_logic, phantom_cases,
                                                                   small_model, tmp_path, checkpoint_use):
    """Slicer's process only describes the model (the worker process segments): one read of the file for the
    first Apply, none for the next while the file is unchanged, one again once it changed; never a network."""
    model = shutil.copy(small_model, tmp_path / "model.pth")  # its modification time is changed below
    volumes = {m: scene_io.load_volume(phantom_cases[CASE][m], f"{CASE}_{m}") for m in scene_io.MODALITIES}

    def apply() -> None:
        job = finish(stand_in_logic.segment(**volumes, model=str(model), device="cpu"))
        assert job.state == "succeeded", job.error
        assert job.result["segmentation"].GetSegmentation().GetNumberOfSegments() == 3

    apply()
    assert checkpoint_use == {"reads": [str(model)], "builds": []}

    apply()
    assert checkpoint_use == {"reads": [str(model)], "builds": []}

    status = os.stat(model)
    os.utime(model, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))  # the file was replaced
    apply()
    assert checkpoint_use == {"reads": [str(model), str(model)], "builds": []}


def test_the_model_card_describes_the_network_without_building_it(stand_in_logic, small_model, checkpoint_use):
    from BratsUNetLib.models.checkpoint import load_model

    card = stand_in_logic.models.card(small_model)

    assert checkpoint_use["builds"] == []
    _network, description = load_model(small_model)  # what the worker loads, for comparison
    assert f"({description['parameters']:,} parameters)" in card
    assert "Input channels: flair, t1, t1ce, t2" in card
