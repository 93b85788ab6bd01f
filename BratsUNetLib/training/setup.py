"""The pieces a training run builds from its config: loss, optimizer, scheduler, inferer, output names.

Every class comes from :func:`allowlists.resolve_name` (an allowlist); a constructor that rejects the config's
keywords gives a one-line ConfigError naming the block. :func:`check_training_config` is the one list of
checks that ``bratsunet train`` runs before it writes anything and that ``bratsunet validate-config`` runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from BratsUNetLib.models.checkpoint import DEFAULT_CHANNELS
from BratsUNetLib.config.allowlists import resolve_name
from BratsUNetLib.errors import ConfigError
from BratsUNetLib.data.labels import REGIONS
from BratsUNetLib.config.loading import dataset_options, load_config, training_options
from BratsUNetLib.models.networks import build_network
from BratsUNetLib.hardware.memory import check_network_memory


def _construct(kind: str, block: Mapping[str, Any], where: str, *args: Any) -> Any:
    cls = resolve_name(kind, block.get("name"), block=where)
    kwargs = {key: value for key, value in block.items() if key != "name"}
    try:
        return cls(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"{where}: {block.get('name')} cannot be built with these settings ({detail}); "
                          f"check the keys of the {where} block.") from None


def build_loss(config: Mapping) -> torch.nn.Module:
    """The config's ``loss`` (torch.nn first, then monai.losses), e.g. ``DiceLoss(sigmoid=True)``."""
    return _construct("loss", config["loss"], "loss")


def build_optimizer(config: Mapping, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The config's ``optimizer`` over ``parameters``, e.g. ``Adam(lr=0.001)``."""
    return _construct("optimizer", config["optimizer"], "optimizer", parameters)


def build_scheduler(config: Mapping, optimizer: torch.optim.Optimizer) -> Any:
    """The config's ``scheduler`` (e.g. ``ReduceLROnPlateau``), or None when the config has none."""
    if not config.get("scheduler"):
        return None
    return _construct("scheduler", config["scheduler"], "scheduler", optimizer)


def build_inferer(config: Mapping) -> Any:
    """The config's ``inference`` inferer (e.g. ``SlidingWindowInferer``) used for validation, or None."""
    if not config.get("inference"):
        return None
    return _construct("inferer", config["inference"], "inference")


def step_scheduler(scheduler: Any, monitored: float) -> None:
    """``ReduceLROnPlateau`` steps with the monitored metric, every other scheduler once per epoch."""
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(monitored)
    else:
        scheduler.step()


def discretize(logits: torch.Tensor, activation: str) -> torch.Tensor:
    """Binary masks (same shape, float 0/1) from network outputs (B, K, ...): probabilities > 0.5, or the
    argmax channel for softmax."""
    if activation == "softmax":
        winner = logits.argmax(dim=1)
        return torch.nn.functional.one_hot(winner, logits.shape[1]).movedim(-1, 1).to(logits.dtype)
    probabilities = torch.sigmoid(logits) if activation == "sigmoid" else logits
    return (probabilities > 0.5).to(logits.dtype)


def output_names(dataset_options: Mapping, out_channels: int | None) -> list[str]:
    """Names of the output channels: WT, TC, ET for a three-level label hierarchy, else from the labels.

    ``labels: [2, 1, 4]`` without hierarchy gives ``label2, label1, label4``; a merged entry ``[1, 4]`` gives
    ``label1+4``.
    """
    labels = list(dataset_options.get("labels") or [])
    if not labels:
        raise ConfigError("dataset: 'labels' is missing; list the label values to train on, e.g. \"labels\": "
                          "[2, 1, 4] with \"setup_label_hierarchy\": true for WT, TC, ET.")
    if dataset_options.get("setup_label_hierarchy") and len(labels) == len(REGIONS):
        names = list(REGIONS)
    else:
        names = ["label" + "+".join(str(v) for v in (entry if isinstance(entry, list) else [entry]))
                 for entry in labels]
    if out_channels is not None and len(names) != out_channels:
        raise ConfigError(f"model.out_channels is {out_channels} but dataset.labels {labels} "
                          f"{'with' if dataset_options.get('setup_label_hierarchy') else 'without'} the label "
                          f"hierarchy gives {len(names)} target channels; make them agree.")
    return names


def channel_names(in_channels: int | None, given: Sequence[str] | None = None) -> list[str]:
    """Input channel names for the checkpoint: ``given``, else BraTS's four, else channel_1 .. channel_N."""
    if given:
        return list(given)
    if in_channels is None or in_channels == len(DEFAULT_CHANNELS):
        return list(DEFAULT_CHANNELS)
    return [f"channel_{i + 1}" for i in range(in_channels)]


@dataclass(frozen=True)
class CheckedConfig:
    """What :func:`check_training_config` built: the validated config, its (untrained) network, and the file the
    config was read from (None for a dict). :func:`BratsUNetLib.training.loop.train` takes it as it is, unchecked."""

    config: dict
    network: torch.nn.Module
    path: Path | None = None


def check_training_config(path_or_dict: Any, *, device: Any = "cpu", batch_size: int | None = None) -> CheckedConfig:
    """Every check a training run makes of its config, before any file is read or written.

    In order: :func:`BratsUNetLib.config.loading.load_config` (keys, types, names, finite numbers in range, input
    shapes the network can divide), the memory the network needs to train on ``desired_shape`` batches (checked
    against ``device`` from the config's description, before anything is built), then every piece built as
    training builds it (network, loss, optimizer over the network's parameters, scheduler, inferer) and the
    output channels against ``dataset.labels``. ConfigError (one line) at the first that fails.
    ``batch_size`` overrides the config's (``train --batch_size``).
    """

    config = load_config(path_or_dict)
    model_block = config["model"]
    options = dataset_options(config, "training")
    check_network_memory(model_block, options.get("desired_shape"), training=True,
                         batch_size=int(batch_size or training_options(config)["batch_size"]), device=device)
    output_names(options, model_block.get("out_channels"))
    network = build_network(model_block)
    build_loss(config)
    build_scheduler(config, build_optimizer(config, network.parameters()))
    build_inferer(config)
    return CheckedConfig(config, network, Path(path_or_dict) if isinstance(path_or_dict, (str, os.PathLike)) else None)
