"""Catalogue models in Slicer, offline: the catalogue points at a server on 127.0.0.1 started here serving a small
MONAI bundle; the panel's registry lists it with its state and card, and the first Apply on its name downloads it
in the worker (with progress events), segments, and records the downloaded checkpoint on the result."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest
from BratsUNetSlicer import scene_io, segment
from file_server import file_server
from jobwait import finish
from small_bundle import write_bundle

from BratsUNetLib.models.catalogue import CATALOGUE_ENV
from BratsUNetLib.models.downloads import MODELS_DIR_ENV

CASE = "BraTS20_Training_001"


@pytest.fixture
def catalogue(tmp_path, monkeypatch):
    bundle = write_bundle(tmp_path / "small_brats.zip").read_bytes()
    with file_server() as server:
        server.files["/small_brats.zip"] = bundle
        entry = {"name": "small_brats", "url": f"{server.url}/small_brats.zip", "format": "monai-bundle",
                 "sha256": hashlib.sha256(bundle).hexdigest(), "title": "Small BraTS bundle",
                 "licence": "Apache-2.0", "citation": "A test bundle, 2026", "channels": ["t1ce", "t1", "t2", "flair"]}
        (tmp_path / "catalogue.json").write_text(json.dumps({"models": [entry]}))
        # Set before the worker starts: it inherits them.
        monkeypatch.setenv(CATALOGUE_ENV, str(tmp_path / "catalogue.json"))
        monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "models"))
        yield server


def test_a_catalogue_model_is_listed_described_downloaded_on_first_apply_and_segments(scene, module, catalogue,
                                                                                     phantom_cases, tmp_path):
    logic = module.BratsUNetLogic()
    try:
        (entry,) = logic.models.add_catalogue()
        assert entry.label() == "Small BraTS bundle (downloads on first use)"
        card = logic.models.card("small_brats")
        assert "Licence: Apache-2.0" in card and "Not downloaded yet" in card
        assert len(catalogue.ranges) == 0  # describing it downloads nothing

        volumes = {m: scene_io.load_volume(phantom_cases[CASE][m], f"{CASE}_{m}") for m in scene_io.MODALITIES}
        events = []
        job = finish(logic.segment(**volumes, model="small_brats", device="cpu", onEvent=events.append))
        assert job.state == "succeeded", job.error
        node = job.result["segmentation"]
        assert node.GetSegmentation().GetNumberOfSegments() == 3
        assert job.result["backend"].endswith(", fp32")  # the panel's status says what ran the network
        downloads = [e for e in events if e.get("event") == "progress" and str(e.get("task")).startswith("download")]
        assert downloads and downloads[-1]["done"] == downloads[-1]["total"] > 0
        checkpoint = tmp_path / "models" / "small_brats.pth"
        assert node.GetAttribute(segment.MODEL_ATTRIBUTE) == str(checkpoint) and checkpoint.is_file()
        assert entry.label() == "Small BraTS bundle (downloaded)"
        assert "Licence: Apache-2.0" in logic.models.card("small_brats")
        assert "Input channels: t1ce, t1, t2, flair" in logic.models.card("small_brats")
    finally:
        logic.worker.close()


def test_the_selector_lists_catalogue_models_before_the_packages_are_installed(module, catalogue, monkeypatch):
    """A fresh Slicer has no platformdirs or pooch yet; the panel still opens and lists the catalogue's models."""
    for name in ("platformdirs", "pooch", "BratsUNetLib.models.downloads", "torch", "monai"):
        monkeypatch.setitem(sys.modules, name, None)  # an import of it fails, as where it is not installed
    logic = module.BratsUNetLogic()
    try:
        (entry,) = logic.models.add_catalogue()
        assert entry.label() == "Small BraTS bundle (downloads on first use)"
        card = logic.models.card("small_brats")  # what the model is, before anything is installed
        assert "Licence: Apache-2.0" in card and "A test bundle, 2026" in card and "Not downloaded yet" in card
    finally:
        logic.worker.close()
