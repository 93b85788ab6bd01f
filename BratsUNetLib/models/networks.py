"""Networks from the config's ``model`` block (any allowlisted ``monai.networks.nets`` class)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from BratsUNetLib.config.allowlists import allowed_names
from BratsUNetLib.config.validation import model_problems
from BratsUNetLib.errors import ConfigError
from BratsUNetLib.hardware.memory import check_network_memory


def build_network(model_block: Mapping[str, Any], *, input_shape: Sequence[int] | None = None,
                  training: bool = False, batch_size: int = 1, device: Any = "cpu") -> torch.nn.Module:
    """Build the network named by ``model_block["name"]`` with the block's other keys as keyword arguments.

    Every network of the library (segment, predict, train, validate-config, the Slicer module) is built here, so
    this is where a config or checkpoint describing an enormous network is refused: before the constructor
    runs, :func:`BratsUNetLib.hardware.memory.check_network_memory` estimates its weights (and, given ``input_shape``,
    the activations of a batch of ``batch_size``; with gradients and optimizer state when ``training``) from
    the block alone and raises ConfigError, saying how much it would need, when that exceeds the memory
    available on ``device``.

    Raises ConfigError, naming the model block, for an unknown name, keywords the class does not accept,
    unsupported settings (deep supervision), a network too big for the memory and values the constructor rejects.
    """
    problems = model_problems(dict(model_block) if isinstance(model_block, Mapping) else model_block)
    if problems:
        raise ConfigError("; ".join(problems))
    check_network_memory(model_block, input_shape, training=training, batch_size=batch_size, device=device)
    name = model_block["name"]
    kwargs = {key: value for key, value in model_block.items() if key != "name"}
    try:
        return allowed_names("network")[name](**kwargs)
    # MONAI checks its arguments with ValueError/TypeError and, in places, assert.
    except (TypeError, ValueError, AssertionError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(f"model: {name} cannot be built with these settings ({detail}); "
                          f"check the values in the model block.") from None
    except MemoryError:
        # The estimate is a lower bound for networks without a formula: the allocation itself may still fail.
        raise ConfigError(f"model: {name} is too big for the memory of this machine; use a smaller network "
                          f"(fewer filters/channels).") from None


def count_parameters(network: torch.nn.Module) -> int:
    """Number of parameter values of ``network`` (shared parameters counted once)."""
    return sum(parameter.numel() for parameter in network.parameters())
