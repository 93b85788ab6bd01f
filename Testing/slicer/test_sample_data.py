"""The sample case: generated once into the user's cache, loaded into a real scene named as a BraTS case (all four
inputs found, a usable training case with its reference segmentation), and offered through Sample Data."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import slicer
from BratsUNetSlicer import cases, sample_data, scene_io


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "bratsunet" / "sample"


def test_the_sample_loads_as_a_brats_case_and_is_generated_once(scene, cache):
    nodes = sample_data.load_sample()
    assert scene_io.guess_inputs(slicer.mrmlScene) == {m: nodes[m] for m in scene_io.MODALITIES}
    assert [nodes[m].GetName() for m in scene_io.MODALITIES] == [f"BraTS20_Sample_001_{m}" for m in
                                                                  scene_io.MODALITIES]
    segmentation = nodes["segmentation"].GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 3
    (case,) = cases.discover_cases(slicer.mrmlScene)
    assert case.usable, case.problems
    files = sample_data.sample_files()
    assert sorted(path.parent for path in files.values()) == [cache / "BraTS20_Sample_001"] * 5
    stamps = {name: path.stat().st_mtime_ns for name, path in files.items()}
    assert {name: path.stat().st_mtime_ns for name, path in sample_data.sample_files().items()} == stamps
    assert [path.name for path in cache.iterdir()] == ["BraTS20_Sample_001"]  # no staging folder left


def test_sample_data_offers_the_case_under_bratsunet(scene, cache, monkeypatch):
    registered = []

    def registerCustomSampleDataSource(category="Custom", sampleName=None, uris=None, fileNames=None,  # noqa: N802
                                       nodeNames=None, customDownloader=None, thumbnailFileName=None,
                                       loadFileTypes=None, loadFiles=None, loadFileProperties=None, checksums=None,
                                       loadFileType=None):
        """Sample Data's own signature (Slicer 5.x), so that a keyword it does not take fails here."""
        registered.append(dict(category=category, sampleName=sampleName, customDownloader=customDownloader,
                               thumbnailFileName=thumbnailFileName))

    logic = types.SimpleNamespace(registerCustomSampleDataSource=registerCustomSampleDataSource)
    monkeypatch.setitem(sys.modules, "SampleData", types.SimpleNamespace(SampleDataLogic=logic))
    sample_data.register()
    (source,) = registered
    assert source["category"] == "BratsUNet" and source["sampleName"] == sample_data.SAMPLE_NAME
    assert Path(source["thumbnailFileName"]).is_file()
    loaded = source["customDownloader"](types.SimpleNamespace(**source))
    assert loaded["flair"].GetName() == "BraTS20_Sample_001_flair"
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 4


def test_the_self_tests_check_of_a_result_finds_what_is_wrong(scene, cache):
    from BratsUNetSlicer.testing import sample_result_problems

    nodes = sample_data.load_sample()
    # The reference segmentation has BratsUNet's segments but no volumes table, and it lies on the FLAIR's grid.
    assert sample_result_problems(nodes["segmentation"], nodes["flair"]) == ["no volumes table"]
    assert sample_result_problems(nodes["segmentation"], nodes["t1"]) == [
        "the segmentation does not lie on the FLAIR's grid", "no volumes table"]
