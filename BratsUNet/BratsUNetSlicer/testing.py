"""What the module's self-test (and the pytest suite) needs besides a scene: the sample case and a small model to
segment it with. Both need the library's packages: call them only where they are installed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from BratsUNetSlicer import results, sample_data, scene_io, segment
from BratsUNetSlicer.training import TrainingOptions, training_config


def small_checkpoint(path: str | os.PathLike, patch_size: int = 32, seed: int = 0) -> Path:
    """Save an untrained "small" DynUNet (random weights from ``seed``) as a BratsUNet checkpoint.

    Its outputs are meaningless but deterministic, which is all a test comparing two ways of running the same
    model needs. Imports torch: call it only where torch is installed.
    """
    # Imported on use: the panel's self-test runs only once torch is installed.
    import torch

    from BratsUNetLib.models.checkpoint import save_checkpoint
    from BratsUNetLib.models.networks import build_network

    config = training_config(TrainingOptions(network="small", patch_size=patch_size), [], [])
    torch.manual_seed(seed)
    network = build_network(config["model"])
    return save_checkpoint(path, network, config=config, channels=scene_io.MODALITIES)


def sample_case_and_model(folder: str | os.PathLike) -> tuple[dict[str, object], Path]:
    """The sample case loaded into the scene (:func:`BratsUNetSlicer.sample_data.load_sample`: modality -> volume
    node, and ``segmentation``, its reference) and an untrained :func:`small_checkpoint` in ``folder``."""
    nodes = sample_data.load_sample()
    return nodes, small_checkpoint(Path(folder) / "model.pth")


def sample_result_problems(segmentation: Any, reference: Any) -> list[str]:
    """What is wrong with a BratsUNet result (empty when nothing): its three segments with their names and
    colours, its geometry on ``reference`` (the FLAIR) and a volumes table whose regions add up."""
    content = segmentation.GetSegmentation()
    segments = [content.GetNthSegment(i) for i in range(content.GetNumberOfSegments())]
    found = [(s.GetName(), tuple(round(c, 3) for c in s.GetColor())) for s in segments]
    expected = [("Necrotic tumor core (label 1)", (1.0, 0.0, 0.0)), ("Peritumoral edema (label 2)", (0.0, 1.0, 0.0)),
                ("Enhancing tumor (label 4)", (1.0, 1.0, 0.0))]
    problems = [] if found == expected else [f"segments {found}, expected {expected}"]
    if segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole()) is not reference:
        problems.append("the segmentation does not lie on the FLAIR's grid")
    table_node = segmentation.GetNodeReference(segment.TABLE_ROLE)
    if table_node is None:
        return [*problems, "no volumes table"]
    table = table_node.GetTable()
    rows = {table.GetValue(row, 0).ToString(): table.GetValue(row, 1).ToDouble()
            for row in range(table.GetNumberOfRows())}
    parts = [rows.get(key, -1.0) for key in results.VOLUME_ROWS.values() if key.endswith(("(NCR)", "(ED)", "(ET)"))]
    whole = rows.get(results.VOLUME_ROWS["WT"], -1.0)
    if min(parts) < 0 or abs(whole - sum(parts)) > 1e-3:
        problems.append(f"volumes {rows} do not add up (WT = NCR + ED + ET)")
    return problems
