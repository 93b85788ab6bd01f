"""Training a guided model (a config with a ``guidance`` block): the clicks a user would give, simulated on each
sample, DeepEdit's way.

For each training sample the network first segments the patch without clicks (no gradient); that prediction is
the prior, as a user's automatic result would be. Then up to ``max_clicks`` clicks go to its largest errors
against the reference (:func:`BratsUNetLib.guidance.largest_error`), each drawn inside its error with a
probability growing with the distance to the error's border, each error counted as corrected once clicked so
that the next click goes elsewhere. ``no_click_fraction`` of the samples get no clicks and no prior, so the model
also segments on its own (how ``segment`` and validation run it). Everything random comes from the sample's
seed, so a run repeats exactly.
"""

from __future__ import annotations

import numpy as np
import torch

from BratsUNetLib.config.validation import GUIDED_EXTRA_CHANNELS
from BratsUNetLib.data.labels import REGIONS
from BratsUNetLib.guidance import click_in, guided_input, largest_error
from BratsUNetLib.training.setup import discretize


class GuidedInputs:
    """Makes a guided network's input ``(B, C + 9, X, Y, Z)`` from a batch of images ``(B, C, X, Y, Z)``."""

    def __init__(self, guidance: dict, activation: str):
        self.guidance = guidance
        self.activation = activation

    @staticmethod
    def automatic(image: torch.Tensor) -> torch.Tensor:
        """The input without clicks and without a prior (segmenting on its own)."""
        return torch.cat([image, image.new_zeros((image.shape[0], GUIDED_EXTRA_CHANNELS, *image.shape[2:]))], 1)

    def with_simulated_clicks(self, network: torch.nn.Module, image: torch.Tensor, label: torch.Tensor,
                              seed: int) -> torch.Tensor:
        """The input for one training step: ``label`` holds the reference regions ``(B, 3, X, Y, Z)`` (WT, TC,
        ET); ``seed`` decides which samples get clicks and where."""
        rng = np.random.default_rng(seed)
        automatic = self.automatic(image)
        with torch.no_grad():
            predicted = discretize(network(automatic), self.activation) > 0.5
        inputs = []
        for sample in range(image.shape[0]):
            if rng.random() < float(self.guidance["no_click_fraction"]):
                inputs.append(automatic[sample])
                continue
            prior = predicted[sample].cpu().numpy()
            reference = label[sample].detach().cpu().numpy() > 0.5
            clicks, corrected = [], prior.copy()
            for _ in range(int(rng.integers(1, int(self.guidance["max_clicks"]) + 1))):
                error = largest_error(corrected, reference)
                if error is None:
                    break
                component, region, positive = error
                clicks.append(click_in(component, region, positive, rng=rng))
                channel = REGIONS.index(region)
                corrected[channel][component] = reference[channel][component]  # this error is the user's no more
            guided = guided_input(image[sample].detach().cpu().numpy(), prior, clicks,
                                  sigma=float(self.guidance["sigma"]))
            inputs.append(torch.from_numpy(guided).to(image.device, image.dtype))
        return torch.stack(inputs)
