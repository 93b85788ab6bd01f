"""Networks from the config's ``model`` block (any allowlisted ``monai.networks.nets`` class)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from BratsUNetLib.allowlists import allowed_names
from BratsUNetLib.config_validation import model_problems
from BratsUNetLib.errors import ConfigError


def build_network(model_block: Mapping[str, Any]) -> torch.nn.Module:
    """Build the network named by ``model_block["name"]`` with the block's other keys as keyword arguments.

    Raises ConfigError, naming the model block, for an unknown name, keywords the class does not accept,
    unsupported settings (deep supervision) and values the constructor rejects.
    """
    problems = model_problems(dict(model_block) if isinstance(model_block, Mapping) else model_block)
    if problems:
        raise ConfigError("; ".join(problems))
    name = model_block["name"]
    kwargs = {key: value for key, value in model_block.items() if key != "name"}
    try:
        return allowed_names("network")[name](**kwargs)
    # MONAI checks its arguments with ValueError/TypeError and, in places, assert.
    except (TypeError, ValueError, AssertionError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(f"model: {name} cannot be built with these settings ({detail}); "
                          f"check the values in the model block.") from None


def count_parameters(network: torch.nn.Module) -> int:
    """Number of parameter values of ``network`` (shared parameters counted once)."""
    return sum(parameter.numel() for parameter in network.parameters())
