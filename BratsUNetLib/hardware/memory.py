"""What work needs before it is done: memory available, and the size of a network described by a config.

A checkpoint or config is a small file that can describe an enormous network (``filters`` of 100 000 channels),
and an image header can claim terabytes of voxels. The work would then exhaust memory (the process is killed, or
the machine swaps for minutes) instead of failing with a line that says what to do. Everything here is computed
from the description alone, analytically: a network is never built to be measured, an image never read.

- :func:`available_memory_bytes`: what may be allocated now (``/proc/meminfo`` and the cgroup limit; psutil is
  not a dependency).
- :func:`estimate_network`: parameters and activation floats per input voxel of a ``model`` block, from its
  widths, kernel sizes and strides (DynUNet, UNet, AttentionUnet, BasicUNet, SegResNet exactly enough; other
  networks a lower bound from their width arguments).
- :func:`check_network_memory`: :class:`~BratsUNetLib.errors.ConfigError` when the estimate exceeds what is
  available, naming both amounts.
- :func:`check_allocation`: the same for any array about to be allocated (image voxels, phantoms).
- :func:`downsampling_factors`: the per-axis product of a network's strides, which its input shape must divide.

The estimates count only the weights and the feature maps a U-shaped network must hold (no allocator slack, no
workspace). ``Testing/library/hardware/test_memory.py`` compares them with the real parameter counts of small MONAI
networks: DynUNet within 5 %, UNet, AttentionUnet, BasicUNet and SegResNet within a factor of 2 (their blocks
differ in detail from the generic encoder-decoder counted here). That is precise enough for the purpose: a
hostile or mistaken file describes a network thousands of times too big, refused whatever the rounding. Near
the limit the verdict can go either way; an allocation that still fails is reported as one line by
:func:`BratsUNetLib.models.networks.build_network` (MemoryError).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from BratsUNetLib.errors import BratsUNetError, ConfigError

FLOAT_BYTES = 4
# Floats kept per parameter while training: the weight, its gradient and Adam's two moments.
TRAINING_FLOATS_PER_PARAMETER = 4
# Feature maps kept per convolution for the backward pass (its output and its normalization's output).
TRAINING_MAPS_PER_CONVOLUTION = 2


def available_memory_bytes(device: Any = "cpu") -> int | None:
    """Memory that may be allocated now on ``device``, in bytes; None where it cannot be known.

    CUDA: the GPU's free memory. CPU on Linux: ``MemAvailable`` of /proc/meminfo (what can be allocated without
    swapping), capped by the free part of the process's cgroup limit (containers). Elsewhere on POSIX: free
    physical pages (``os.sysconf``). Other devices: None.
    """
    kind = getattr(device, "type", None) or str(device or "cpu").split(":")[0]
    if kind == "cuda":
        # Imported here: only a CUDA device needs torch; the CPU estimates also serve the image checks of
        # processes that never import it.
        import torch

        try:
            return int(torch.cuda.mem_get_info(torch.device(device) if isinstance(device, str) else device)[0])
        except (RuntimeError, AssertionError, ValueError):  # no CUDA here: the device's own error comes later
            return None
    if kind != "cpu":
        return None
    available = _meminfo_available()
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text())
        except (OSError, ValueError):
            continue
        if limit.isdigit():  # "max": no limit
            available = min(available, max(int(limit) - usage, 0))
        break
    return int(available)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo if ":" in line)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def describe_bytes(size: float) -> str:
    """A byte count for messages: ``"3.2 GB"``, ``"1.5 TB"``, ``"12 MB"`` (powers of 1024)."""
    for unit, power in (("TB", 4), ("GB", 3), ("MB", 2)):
        if size >= 1024 ** power:
            return f"{size / 1024 ** power:.1f} {unit}"
    return f"{max(size, 0) / 1024 ** 2:.2f} MB"


def check_allocation(size: float, what: str, fix: str, error: type[BratsUNetError] = BratsUNetError,
                     device: Any = "cpu") -> None:
    """Raise ``error`` when ``size`` bytes for ``what`` exceed the memory available on ``device``.

    The message: ``"<what> would need about X but Y is available; <fix>."``. Unknown availability passes.
    """
    available = available_memory_bytes(device)
    if available is not None and size > available:
        raise error(f"{what} would need about {describe_bytes(size)} of memory but {describe_bytes(available)} "
                    f"is available; {fix}.")


# ------------------------------------------------------------------------------------------ network sizes

@dataclass(frozen=True)
class NetworkEstimate:
    """A network's size from its description: ``parameters`` (values), ``inference_floats`` and
    ``training_floats`` (activation floats per input voxel, batch of one, at the peak of a forward pass and for
    the maps a backward pass keeps). ``exact`` is False for networks only bounded from below."""

    name: str
    parameters: int
    inference_floats: float
    training_floats: float
    exact: bool = True

    def bytes_needed(self, input_shape: Sequence[int] | None = None, *, training: bool = False,
                     batch_size: int = 1, in_channels: int = 0, out_channels: int = 0) -> float:
        """Bytes for the weights (and gradients and optimizer state when ``training``) plus the activations of
        a batch of ``input_shape`` (spatial) inputs (none when ``input_shape`` is None)."""
        size = self.parameters * FLOAT_BYTES * (TRAINING_FLOATS_PER_PARAMETER if training else 1)
        if input_shape:
            voxels = math.prod(int(n) for n in input_shape)
            floats = (self.training_floats if training else self.inference_floats) + in_channels + out_channels
            size += FLOAT_BYTES * batch_size * voxels * floats
        return float(size)


def _per_axis(value: Any, dims: int) -> list[int]:
    """An int or a sequence of ints (a kernel size, a stride) as ``dims`` ints; 1s for anything else."""
    if isinstance(value, bool):
        return [1] * dims
    # Zero or negative values (which the constructor refuses) count as 1, so that the estimate never divides by 0.
    if isinstance(value, int):
        return [max(value, 1)] * dims
    if isinstance(value, (list, tuple)) and len(value) == dims and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [max(int(v), 1) for v in value]
    return [1] * dims


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def _ints(value: Any) -> list[int] | None:
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return [int(v) for v in value]
    return None


def _dynunet_filters(block: Mapping, levels: int, dims: int) -> list[int]:
    # MONAI's default: 32, 64, ... capped at 320 (3-D) / 512 (2-D).
    return _ints(block.get("filters")) or [min(2 ** (5 + i), 320 if dims == 3 else 512) for i in range(levels)]


def _encoder_decoder(widths: Sequence[int], kernels: Sequence[int], voxel_fractions: Sequence[float],
                     in_channels: int, out_channels: int, convs_per_level: int = 2,
                     up_kernels: Sequence[int] | None = None) -> tuple[int, float, float]:
    """Parameters and activation floats per input voxel of a U-shaped network.

    Level ``i`` has ``widths[i]`` channels, kernels of ``kernels[i]`` values and ``voxel_fractions[i]`` of the
    input's voxels. Encoder: ``convs_per_level`` convolutions per level (the first from the level above).
    Decoder: per level above the bottom an up-convolution (``up_kernels[i]`` values, default ``kernels[i]``),
    then convolutions from the concatenation (2 × width) and of the width. Inference keeps every skip connection plus a level's working maps
    (the concatenation and two convolution outputs); training keeps the maps of every convolution.
    """
    parameters = 0
    training = 0.0
    previous = in_channels
    for width, kernel, fraction in zip(widths, kernels, voxel_fractions):
        parameters += previous * width * kernel + (convs_per_level - 1) * width * width * kernel
        training += TRAINING_MAPS_PER_CONVOLUTION * convs_per_level * width * fraction
        previous = width
    for level in range(len(widths) - 1):
        width, kernel, fraction = widths[level], kernels[level], voxel_fractions[level]
        up_kernel = up_kernels[level] if up_kernels else kernel
        parameters += widths[level + 1] * width * up_kernel
        parameters += 2 * width * width * kernel + (convs_per_level - 1) * width * width * kernel
        training += TRAINING_MAPS_PER_CONVOLUTION * (convs_per_level + 1) * width * fraction + 2 * width * fraction
    parameters += widths[0] * out_channels
    skips = sum(w * f for w, f in zip(widths, voxel_fractions))
    working = max(4 * w * f for w, f in zip(widths, voxel_fractions))
    return int(parameters), float(skips + working), float(training)


def _fractions(strides: Sequence[Sequence[int]]) -> list[float]:
    """Fraction of the input's voxels at each level, from per-level strides (cumulative)."""
    fractions, factor = [], 1
    for stride in strides:
        factor *= math.prod(stride)
        fractions.append(1.0 / factor)
    return fractions


def estimate_network(model_block: Mapping[str, Any]) -> NetworkEstimate | None:
    """The size of the network ``model_block`` describes, computed from its arguments (nothing is built).

    None when the block does not name a network or gives no width to estimate from.
    """
    if not isinstance(model_block, Mapping) or not isinstance(model_block.get("name"), str):
        return None
    name = model_block["name"]
    dims = _int(model_block.get("spatial_dims"), 3)
    in_channels = _int(model_block.get("in_channels"), 1)
    out_channels = _int(model_block.get("out_channels"), 1)
    key = name.lower()
    if key == "dynunet":
        strides_list = model_block.get("strides")
        if not isinstance(strides_list, (list, tuple)) or not strides_list:
            return None
        strides = [_per_axis(s, dims) for s in strides_list]
        kernels_list = model_block.get("kernel_size")
        kernels = [math.prod(_per_axis(k, dims)) for k in (kernels_list if isinstance(kernels_list, (list, tuple))
                                                         else [3] * len(strides))]
        kernels = (kernels + [kernels[-1] if kernels else 1] * len(strides))[: len(strides)]
        widths = _dynunet_filters(model_block, len(strides), dims)[: len(strides)]
        # The up-convolution of level i (to the width of level i) is upsample_kernel_size[i], as big as its stride.
        up_list = model_block.get("upsample_kernel_size")
        up_kernels = [math.prod(_per_axis(k, dims)) for k in up_list] if isinstance(up_list, (list, tuple)) else []
        up_kernels = (up_kernels + [math.prod(s) for s in strides[len(up_kernels) + 1:]] + [1])[: len(strides)]
        result = _encoder_decoder(widths, kernels, _fractions(strides), in_channels, out_channels,
                                  up_kernels=up_kernels)
        return NetworkEstimate(name, *result)
    if key in ("unet", "attentionunet"):
        widths = _ints(model_block.get("channels"))
        if not widths:
            return None
        strides = [_per_axis(s, dims) for s in (model_block.get("strides") or [])]
        # MONAI's UNet downsamples in the first convolution of each level below the top.
        strides = ([[1] * dims] + strides + [[1] * dims] * len(widths))[: len(widths)]
        kernel = math.prod(_per_axis(model_block.get("kernel_size", 3), dims))
        units = _int(model_block.get("num_res_units"), 0)
        result = _encoder_decoder(widths, [kernel] * len(widths), _fractions(strides), in_channels, out_channels,
                                  convs_per_level=max(1, units))
        return NetworkEstimate(name, *result)
    if key == "basicunet":
        features = _ints(model_block.get("features")) or [32, 32, 64, 128, 256, 32]
        widths = features[:5]
        result = _encoder_decoder(widths, [3 ** dims] * len(widths), _fractions([[1] * dims] + [[2] * dims] * 4),
                                  in_channels, out_channels)
        return NetworkEstimate(name, *result)
    if key == "segresnet":
        init = _int(model_block.get("init_filters"), 8)
        blocks = _ints(model_block.get("blocks_down")) or [1, 2, 2, 4]
        widths = [init * 2 ** i for i in range(len(blocks))]
        result = _encoder_decoder(widths, [3 ** dims] * len(widths),
                                  _fractions([[1] * dims] + [[2] * dims] * (len(widths) - 1)),
                                  in_channels, out_channels, convs_per_level=2 * max(blocks))
        return NetworkEstimate(name, *result)
    return _lower_bound(name, model_block)


# Width arguments of MONAI networks (channels of feature maps, sizes of embeddings).
_WIDTH_KEYS = ("filters", "channels", "features", "init_filters", "feature_size", "hidden_size", "mlp_dim",
               "num_channels")


def _lower_bound(name: str, model_block: Mapping[str, Any]) -> NetworkEstimate | None:
    """For networks without a formula: each width argument implies at least one width × width layer, and the
    first a full-resolution map of that width."""
    widths: list[int] = []
    for key in _WIDTH_KEYS:
        value = model_block.get(key)
        widths += [value] if _int(value, 0) else (_ints(value) or [])
    if not widths:
        return None
    parameters = sum(w * w for w in widths)
    return NetworkEstimate(name, int(parameters), float(widths[0]), float(2 * widths[0]), exact=False)


def check_network_memory(model_block: Mapping[str, Any], input_shape: Sequence[int] | None = None, *,
                         training: bool = False, batch_size: int = 1, device: Any = "cpu",
                         source: str = "model") -> NetworkEstimate | None:
    """Refuse (ConfigError naming ``source``) a network that cannot fit in the memory available on ``device``.

    Counts the weights (with gradients and Adam's state when ``training``) and, when ``input_shape`` (spatial)
    is given, the activations of a batch of ``batch_size``. Returns the estimate (None when there is none).
    """
    estimate = estimate_network(model_block)
    if estimate is None:
        return None
    needed = estimate.bytes_needed(input_shape, training=training, batch_size=batch_size,
                                   in_channels=_int(model_block.get("in_channels"), 1),
                                   out_channels=_int(model_block.get("out_channels"), 1))
    available = available_memory_bytes(device)
    if available is not None and needed > available:
        work = "training" if training else "running"
        shape = f" on {'x'.join(str(int(n)) for n in input_shape)} inputs" if input_shape else ""
        raise ConfigError(
            f"{source}: {estimate.name} with {_describe_widths(model_block)} has about {estimate.parameters:,} "
            f"parameters; {work} it{shape} would need about {describe_bytes(needed)} of memory but "
            f"{describe_bytes(available)} is available; use a smaller network (fewer filters/channels)"
            f"{', a smaller input shape' if input_shape else ''} or a machine with more memory.")
    return estimate


def _describe_widths(model_block: Mapping[str, Any]) -> str:
    for key in _WIDTH_KEYS:
        if key in model_block:
            value = model_block[key]
            text = str(list(value)) if isinstance(value, (list, tuple)) else str(value)
            return f"{key} {text if len(text) <= 60 else text[:57] + '...'}"
    return "its default widths"


def downsampling_factors(model_block: Mapping[str, Any]) -> list[int] | None:
    """Per-axis product of the network's ``strides``: what every axis of its input must be a multiple of.

    None when the block lists no strides (the network's own constructor then decides).
    """
    strides = model_block.get("strides") if isinstance(model_block, Mapping) else None
    if not isinstance(strides, (list, tuple)) or not strides:
        return None
    dims = _int(model_block.get("spatial_dims"), 3)
    factors = [1] * dims
    for stride in strides:
        factors = [f * s for f, s in zip(factors, _per_axis(stride, dims))]
    return factors
