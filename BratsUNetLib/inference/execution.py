"""How the network runs on a preprocessed image: as it was trained (resized), or at native resolution in one
pass or in sliding windows, and the activation of its outputs.

``auto`` at native resolution takes the single pass when its estimated memory (:func:`whole_volume_bytes`) fits
in the memory available (:func:`BratsUNetLib.hardware.memory.available_memory_bytes`), else sliding windows;
:func:`network_runner` returns the chosen way as a function batch → logits with a one-line description.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai import transforms as mt
from monai.inferers import SlidingWindowInferer

from BratsUNetLib.config.allowlists import resolve_name
from BratsUNetLib.errors import ConfigError
from BratsUNetLib.hardware.memory import available_memory_bytes
from BratsUNetLib.inference.loaded_model import LoadedModel
from BratsUNetLib.inference.options import InferenceOptions

#: Floats an eager fp32 pass keeps alive per input voxel, per channel of the network's first convolution, at its
#: peak (the full-resolution decoder stage holds the skip connection, the upsampled features, their concatenation
#: and the convolution outputs), besides the input and output channels. Measured as process peak memory for
#: DynUNets whose first convolution has 8, 16 and 64 channels, at 96³-160³: 5.6-7.2 (benchmarks/README.md).
ACTIVATION_FLOATS_PER_WIDTH = 6
#: The share of the available memory a whole-volume pass may take: the rest covers the estimate's error (up to
#: 15 % under for small networks) and the outputs.
WHOLE_VOLUME_MEMORY_SHARE = 0.8


def network_runner(model: LoadedModel, options: InferenceOptions, native: bool,
                   shape: tuple[int, ...]) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """A function batch → logits for preprocessed images of ``shape`` ``(C, X, Y, Z)``, and how it runs (one line).

    Resized images go through the network as they are. At native resolution the network runs on the whole
    volume, padded to a multiple of its downsampling, or in sliding windows: as ``options`` asks, else
    (``auto``) in one pass when :func:`whole_volume_bytes` fits in :data:`WHOLE_VOLUME_MEMORY_SHARE` of
    :func:`available_memory_bytes`, else in windows.
    """
    network = model.forward(options.backend, options.precision)
    spatial = shape[1:]
    if not native:
        return network, f"the whole volume at the model's input size {_dims(spatial)}, as it was trained"
    divisor = downsampling(model.config["model"])
    padded = tuple(-(-size // factor) * factor for size, factor in zip(spatial, divisor))
    # --native (auto, whole, windows) wins; without it, as the model's publisher runs it (a bundle's sliding window).
    strategy, reason = options.native_strategy or model.dataset.get("native_strategy") or "auto", ""
    if strategy == "auto":
        strategy, reason = _choose_native_strategy(model, (shape[0], *padded))
    if strategy == "windows":
        inferer = _sliding_window_inferer(model)
        return (lambda batch: inferer(batch, network),
                f"native resolution {_dims(spatial)} in sliding windows of {_dims(inferer.roi_size)}{reason}")
    pad = mt.DivisiblePad(k=divisor, method="end")

    def whole_volume(batch: torch.Tensor) -> torch.Tensor:
        # Pad to what the network's downsampling divides, then cut the padding off again.
        padded_batch = torch.stack([pad(item) for item in batch])
        return network(padded_batch)[(..., *(slice(0, size) for size in batch.shape[2:]))]

    return whole_volume, f"native resolution {_dims(spatial)} in one pass padded to {_dims(padded)}{reason}"


def _choose_native_strategy(model: LoadedModel, shape: tuple[int, ...]) -> tuple[str, str]:
    """``("whole" | "windows", why)`` for ``auto`` on a padded input of ``shape`` ``(C, X, Y, Z)``."""
    try:
        _sliding_window_inferer(model)
    except ConfigError:
        return "whole", " (auto: the model has no window size)"
    needed = whole_volume_bytes(model.network, shape, int(model.config["model"].get("out_channels") or 0))
    available = available_memory_bytes(model.device)
    if available is None:
        return "windows", f" (auto: a single pass needs about {_gb(needed)}; free memory unknown on this system)"
    if needed <= WHOLE_VOLUME_MEMORY_SHARE * available:
        return "whole", f" (auto: needs about {_gb(needed)} of {_gb(available)} available)"
    return "windows", f" (auto: a single pass would need about {_gb(needed)}, {_gb(available)} available)"


def whole_volume_bytes(network: torch.nn.Module, shape: Sequence[int], out_channels: int) -> int:
    """Estimated peak memory in bytes of one fp32 pass of ``network`` over a ``(C, X, Y, Z)`` input.

    Activations grow with the voxels; per voxel, :data:`ACTIVATION_FLOATS_PER_WIDTH` floats per channel of the
    network's first convolution (the widest full-resolution feature maps of a U-Net), plus the input and the
    ``out_channels`` outputs. A formula rather than a traced pass: tracing memory use through PyTorch's dispatcher
    costs seconds of imports and running even a small pass costs seconds of network time.
    """
    width = next((module.out_channels for module in network.modules()
                  if isinstance(module, (torch.nn.Conv3d, torch.nn.ConvTranspose3d))), 0)
    voxels = int(np.prod([int(size) for size in shape[1:]]))
    return 4 * voxels * (ACTIVATION_FLOATS_PER_WIDTH * width + int(shape[0]) + out_channels)


def _dims(shape: Sequence[int]) -> str:
    return "×".join(str(int(size)) for size in shape)


def _gb(size: float) -> str:
    return f"{size / 2 ** 30:.1f} GB"


def _sliding_window_inferer(model: LoadedModel) -> SlidingWindowInferer:
    """The config's ``inference`` block when it names a sliding-window inferer, else windows of ``desired_shape``."""
    block = model.config.get("inference") or {}
    if block.get("name"):
        cls = resolve_name("inferer", block["name"], "inference", "name")
        if isinstance(cls, type) and issubclass(cls, SlidingWindowInferer):
            return cls(**{key: value for key, value in block.items() if key != "name"})
    roi = model.dataset.get("desired_shape")
    if not roi:
        raise ConfigError(f"Model '{model.path}' has no window size for sliding-window inference: its config has "
                          "neither dataset.desired_shape nor an inference block with roi_size; run it with "
                          "--native whole or auto, not in windows.")
    return SlidingWindowInferer(roi_size=list(roi), sw_batch_size=1, overlap=0.25, mode="gaussian")


def downsampling(model_block: dict) -> list[int]:
    """Per-axis product of the network's strides: the native input shape must be a multiple of it.

    Networks whose block does not list ``strides`` get 32, enough for five halvings.
    """
    strides = model_block.get("strides")
    if not strides:
        return [32, 32, 32]
    factors = np.ones(3, dtype=int)
    for stride in strides:
        factors *= np.broadcast_to(np.asarray(stride, dtype=int), (3,))
    return [int(f) for f in factors]


def activate(logits: torch.Tensor, activation: str) -> torch.Tensor:
    """``logits`` ``(N, K, X, Y, Z)`` through ``activation``, one of :data:`.options.ACTIVATIONS`."""
    if activation == "sigmoid":
        return logits.sigmoid_()  # in place: the logits are not used again
    if activation == "softmax":
        return torch.softmax(logits, dim=1)
    return logits

