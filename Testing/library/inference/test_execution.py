"""How the network runs: sliding windows need a window size, ``auto`` takes one pass when it fits in memory, the
memory estimate of a pass (BratsUNetLib/inference/execution.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from library_support import TINY_CONFIG
from segmentation_cases import LEFT_HANDED, SHAPE, BlobDetector, blob_case, dice, model_from, tiny_config

from BratsUNetLib.errors import ConfigError
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.inference import execution
from BratsUNetLib.inference.options import InferenceOptions
from BratsUNetLib.inference.pipeline import segment_case
from BratsUNetLib.models.networks import build_network


def test_sliding_window_needs_a_window_size(tmp_path):
    paths, _ = blob_case(tmp_path)
    model = model_from(BlobDetector(), tiny_config(desired_shape=None))
    with pytest.raises(ConfigError, match="sliding-window"):
        segment_case(paths, [model], InferenceOptions(sliding_window=True))


@pytest.mark.parametrize("available, chosen", [(10 ** 12, "in one pass"), (100_000, "in sliding windows"),
                                               (None, "in sliding windows")])
def test_native_auto_runs_one_pass_when_it_fits_in_memory_else_windows(tmp_path, monkeypatch, available, chosen):
    paths, blob = blob_case(tmp_path)
    monkeypatch.setattr(execution, "available_memory_bytes", lambda device: available)
    model = model_from(BlobDetector(), tiny_config())  # resized to 32³ unless told to run at native resolution
    messages = []
    reporter = ProgressReporter("none")
    reporter.message = messages.append

    result = segment_case(paths, [model], InferenceOptions(native="auto"), reporter)
    assert chosen in result.strategy and messages == [f"Inference: {result.strategy}."]
    assert result.labels.shape == SHAPE and dice(result.labels > 0, blob) > 0.99  # exact: no resize
    np.testing.assert_allclose(result.affine, LEFT_HANDED)
    # A pointwise network gives the same probabilities whether it sees the volume whole or in windows.
    forced = "whole" if "windows" in chosen else "windows"
    other = segment_case(paths, [model], InferenceOptions(native=forced))
    assert ("in one pass" if forced == "whole" else "in sliding windows") in other.strategy
    np.testing.assert_allclose(other.probabilities, result.probabilities, atol=1e-4)


def test_the_memory_a_whole_volume_pass_needs_grows_with_its_voxels_and_the_network_width():
    narrow, wide = (build_network(dict(TINY_CONFIG["model"], filters=filters)) for filters in ([4, 8, 16], [8, 16, 32]))
    small = execution.whole_volume_bytes(narrow, (4, 32, 32, 32), out_channels=3)
    assert execution.whole_volume_bytes(narrow, (4, 64, 64, 64), out_channels=3) == 8 * small
    assert execution.whole_volume_bytes(wide, (4, 32, 32, 32), out_channels=3) > 1.5 * small
    # At least the input, the outputs and the first convolution's feature maps, in float32.
    assert small >= 4 * 32 ** 3 * (4 + 3 + 4)


def test_available_memory_is_known_on_linux_cpus_only():
    available = execution.available_memory_bytes(torch.device("cpu"))
    if os.path.exists("/proc/meminfo"):
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        total = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1]) * 1024
        assert 0 < available <= total
    assert execution.available_memory_bytes(torch.device("meta")) is None
