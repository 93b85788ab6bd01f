"""What a user asks of a segmentation is checked before any image is read (BratsUNetLib/inference/options.py)."""

from __future__ import annotations

import pytest

from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.inference.options import InferenceOptions


def test_contradictory_strategies_are_a_user_error():
    with pytest.raises(BratsUNetError, match="--sliding-window.*--native whole"):
        InferenceOptions(sliding_window=True, native="whole")
    with pytest.raises(BratsUNetError, match="auto, whole, windows"):
        InferenceOptions(native="patches")
    assert InferenceOptions(sliding_window=True).native_strategy == "windows"
