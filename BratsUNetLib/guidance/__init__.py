"""Guidance for click-guided refinement: what a user's clicks are, how a guided network sees them, where a click
is simulated, and which part of the volume a click recomputes.

A guided network takes the four image channels, then :data:`~.signals.GUIDANCE_CHANNELS` (positive and negative
click maps per region WT, TC, ET) and the current segmentation as three region masks (the prior):
``4 + 6 + 3 = 13`` input channels, all on the reference grid, ``(C, X, Y, Z)``.
"""

from BratsUNetLib.guidance.clicks import Click, VoxelClick, parse_click, to_voxel_clicks
from BratsUNetLib.guidance.region import (
           fixed_size_box,
           keep_unclicked_regions,
           refinement_box,
)
from BratsUNetLib.guidance.signals import (
           GUIDANCE_CHANNELS,
           PRIOR_CHANNELS,
           guided_input,
)
from BratsUNetLib.guidance.simulation import click_in, largest_error, next_click

__all__ = ["GUIDANCE_CHANNELS", "PRIOR_CHANNELS", "Click", "VoxelClick", "click_in", "fixed_size_box", "guided_input",
           "keep_unclicked_regions", "largest_error", "next_click", "parse_click", "refinement_box",
           "to_voxel_clicks"]
