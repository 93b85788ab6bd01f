"""The models the panel offers: how the selector names them."""

from __future__ import annotations

from BratsUNetSlicer.models import ModelRegistry


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
