"""Sample data: a BraTS-style case (FLAIR, T1, T1ce, T2 and its reference segmentation) in one click.

The case is generated from the library's phantoms on first request (no download), cached in the user's cache
folder and named like a BraTS case (``BraTS20_Sample_001_flair``...), so the panel fills all four inputs and
lists it as a training case. It is registered with Slicer's Sample Data module under "BratsUNet"; the module's
self-test loads it too.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from BratsUNetSlicer import results, scene_io

CATEGORY = "BratsUNet"
SAMPLE_NAME = "BratsUNet synthetic glioma"
CASE_ID = "BraTS20_Sample_001"
#: 1 mm voxels: a brain of 96×96×72 mm is scaled to fit (a few seconds to generate, seconds to segment on a CPU).
SHAPE = (96, 96, 72)
SEED = 2026


def sample_folder() -> Path:
    """Where the generated case is kept: the user's cache folder + ``bratsunet/sample``."""
    # Imported on use: platformdirs is one of the library's packages, which the panel may still have to install.
    import platformdirs

    return platformdirs.user_cache_path("bratsunet") / "sample"


def sample_files(folder: Path | None = None) -> dict[str, Path]:
    """The sample case's files by modality (and ``seg``), generated into ``folder`` when not there yet.

    Generated in a temporary folder beside it and renamed into place, so a stopped generation leaves no half case.
    """
    # Imported on use: the phantoms bring numpy, scipy, nibabel and nilearn, installed with the library.
    from BratsUNetLib.phantoms.generate import case_paths, generate_case, write_case

    folder = Path(folder or sample_folder())
    paths = case_paths(folder, CASE_ID)
    if all(path.is_file() for path in paths.values()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".generating-") as staging:
        write_case(generate_case(shape=SHAPE, seed=SEED), staging, CASE_ID)
        target = paths["seg"].parent
        shutil.rmtree(target, ignore_errors=True)  # an incomplete case from an older version
        Path(staging, CASE_ID).rename(target)
    return paths


def load_sample(folder: Path | None = None) -> dict[str, Any]:
    """Load the sample case into the scene: the four volumes by modality and its reference ``segmentation``."""
    paths = sample_files(folder)
    nodes: dict[str, Any] = {modality: scene_io.load_volume(paths[modality], f"{CASE_ID}_{modality}")
                             for modality in scene_io.MODALITIES}
    nodes["segmentation"] = results.import_segmentation(paths["seg"], nodes["flair"], "brats2020",
                                                        name=f"{CASE_ID}_seg")
    return nodes


def register() -> None:
    """Offer the sample in Slicer's Sample Data module (where the application has one)."""
    try:
        import SampleData
    except ImportError:  # e.g. a Slicer built without it
        return
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=CATEGORY, sampleName=SAMPLE_NAME, uris=None, fileNames=None, nodeNames=None,
        thumbnailFileName=str(Path(__file__).resolve().parents[1] / "Resources" / "Icons" / "BratsUNet.png"),
        customDownloader=lambda source: load_sample())
