"""Checkpoints: BratsUNet's own self-describing format, and the original 3DUnetCNN's bare state_dicts.

BratsUNet format (``torch.save`` of one dict, written atomically)::

    format="bratsunet", format_version=1, library_version, created (ISO 8601, UTC),
    config     the normalized original-format config without file lists (model, loss, dataset, ... blocks)
    channels   input channel names in network order, e.g. ["flair", "t1", "t1ce", "t2"]
    regions    output channel names, e.g. ["WT", "TC", "ET"]
    training   summary dict (cases, epochs, best metrics, date, ...), {} when unknown
    state_dict the network's weights (CPU tensors)
    optimizer, scheduler, epoch, rng_state, extra   for resuming; None when not saved

Everything inside is a tensor, dict, list, tuple, str, int, float, bool or None, so the file loads with
``torch.load(weights_only=True)``: numpy arrays and scalars are stored as (nested) lists and Python numbers
(see :func:`capture_rng_state` / :func:`restore_rng_state` for the random generators).

Files are only ever loaded with ``weights_only=True``: a file whose unpickling would call anything else
(a pickle that runs code) is refused, never retried unsafely.

The original saved ``model.state_dict()`` as it was: an OrderedDict of tensors, possibly with a ``module.``
prefix (DataParallel/DDP), and for MONAI's DynUNet with 71 ``skip_layers.*`` keys that alias real keys.
:func:`load_weights` accepts all of these and otherwise insists on an exact match of keys and shapes.

:func:`describe_checkpoint` reads what a model is (channels, outputs, network and size, preprocessing, training)
from one read of the file, without building the network; :func:`load_model` builds and loads it from that same read.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import pickle
import random
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from BratsUNetLib import __version__
from BratsUNetLib.config.loading import config_for_checkpoint, load_config
from BratsUNetLib.config.validation import image_channel_count
from BratsUNetLib.errors import CheckpointError, ConfigError
from BratsUNetLib.modalities import MODALITIES
from BratsUNetLib.fileio import atomic_path
from BratsUNetLib.hardware.memory import check_network_memory
from BratsUNetLib.inputfiles import require_regular_file
from BratsUNetLib.models.networks import build_network, count_parameters

FORMAT = "bratsunet"
FORMAT_VERSION = 1
ORIGINAL_FORMAT = "3dunetcnn"
DEFAULT_CHANNELS = MODALITIES  # what a checkpoint that names no channels takes
DEFAULT_REGIONS = ("WT", "TC", "ET")
# Prefix added to every key by torch.nn.DataParallel / DistributedDataParallel.
_WRAPPER_PREFIX = "module."
_MAX_LISTED_MISMATCHES = 5


# ------------------------------------------------------------------------------------------------ saving

def _weights_only_safe(value: Any, where: str = "checkpoint") -> Any:
    """``value`` with numpy values turned into lists / Python numbers and tensors moved to the CPU.

    Raises TypeError (a programming error, not a user error) for anything ``weights_only`` could not load.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        safe = {}
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where}: key {key!r} must be a str or int to be saved in a checkpoint")
            safe[key] = _weights_only_safe(item, f"{where}[{key!r}]")
        return safe
    if isinstance(value, (list, tuple)):
        items = [_weights_only_safe(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    raise TypeError(f"{where}: a {type(value).__name__} cannot be saved in a checkpoint that loads with "
                    f"weights_only=True; convert it to tensors, lists, dicts or numbers")


def _unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The network inside a DataParallel / DistributedDataParallel wrapper (or the network itself)."""
    wrappers = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    return network.module if isinstance(network, wrappers) else network


def _cpu_state_dict(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The network's state_dict on the CPU, aliases still sharing one tensor (so they are stored once)."""
    state = _unwrap(network).state_dict()
    moved: dict[tuple, torch.Tensor] = {}
    result = {}
    for key, tensor in state.items():
        identity = _storage_identity(tensor) or (key,)
        if identity not in moved:
            moved[identity] = tensor.detach().cpu()
        result[key] = moved[identity]
    return result


def _state_of(obj: Any) -> Any:
    """An optimizer's / scheduler's state_dict, or ``obj`` itself when it already is one (or None)."""
    return obj.state_dict() if hasattr(obj, "state_dict") else obj


def save_checkpoint(path: str | os.PathLike, network: torch.nn.Module, *, config: Mapping,
                    channels: Sequence[str], training: Mapping | None = None, optimizer: Any = None,
                    scheduler: Any = None, epoch: int | None = None, rng_state: Any = None,
                    extra: Mapping | None = None, regions: Sequence[str] = DEFAULT_REGIONS) -> Path:
    """Write a BratsUNet checkpoint to ``path`` atomically and return the path.

    ``config`` is validated and stored without its file lists. ``optimizer`` / ``scheduler`` may be the
    objects or their state_dicts. ``rng_state`` is typically :func:`capture_rng_state`'s result.
    """
    config = load_config(config_for_checkpoint(config))
    in_channels = image_channel_count(config)  # a guided model's click channels are not images
    if isinstance(in_channels, int) and len(channels) != in_channels:
        raise CheckpointError(f"{len(channels)} channel names ({', '.join(channels)}) given for a network with "
                              f"{in_channels} image channels; give one name per input channel.")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "channels": [str(c) for c in channels],
        "regions": [str(r) for r in regions],
        "training": _weights_only_safe(dict(training or {}), "training"),
        "state_dict": _cpu_state_dict(network),
        "optimizer": _weights_only_safe(_state_of(optimizer), "optimizer"),
        "scheduler": _weights_only_safe(_state_of(scheduler), "scheduler"),
        "epoch": None if epoch is None else int(epoch),
        "rng_state": _weights_only_safe(rng_state, "rng_state"),
        "extra": _weights_only_safe(dict(extra) if extra is not None else None, "extra"),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def capture_rng_state() -> dict:
    """The state of Python's, numpy's and torch's (CPU and CUDA) random generators, checkpoint-safe.

    numpy's state tuple is stored as ``[name, keys as a list of ints, pos, has_gauss, cached_gaussian]``.
    """
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping) -> None:
    """Put back generator states saved by :func:`capture_rng_state` (CUDA only when it is available)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------------- loading

def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint safely: a BratsUNet checkpoint dict, or ``{"format": "3dunetcnn", "state_dict"}``.

    Raises CheckpointError for a missing file, a folder, a FIFO or device (refused before it is opened), a file
    that is not a checkpoint, and a file whose loading would run code (refused).
    """
    # A FIFO would block torch.load and /dev/zero feed it forever: refuse anything but a regular file unopened.
    path = require_regular_file(path, "Checkpoint", "give the model file (.pth), e.g. model_best.pth",
                                error=CheckpointError)
    not_valid = (f"'{path}' is not a valid checkpoint (a PyTorch .pth file saved by BratsUNet or 3DUnetCNN)")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = re.search(r"\bGLOBAL ([\w.]+)", str(exc))  # a global torch does not allow: code to call
        if unsafe:
            raise CheckpointError(f"{not_valid}: it was refused because loading it would run code "
                                  f"({unsafe.group(1)}); only plain weights are ever loaded.") from None
        raise CheckpointError(f"{not_valid}; the file is damaged or of another kind.") from None
    except PermissionError:
        raise CheckpointError(f"Cannot read the checkpoint '{path}': permission denied.") from None
    # Damaged or foreign files fail in many ways inside torch (RuntimeError, EOFError, KeyError, ...).
    except Exception:
        raise CheckpointError(f"{not_valid}; the file is damaged (e.g. an incomplete download) or of "
                              f"another kind.") from None
    return _checked_content(content, path, not_valid)


def _is_state_dict(value: Any) -> bool:
    return (isinstance(value, Mapping) and bool(value)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()))


def _checked_content(content: Any, path: Path, not_valid: str) -> dict:
    if isinstance(content, Mapping) and content.get("format") == FORMAT:
        version = content.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(f"Checkpoint '{path}' has format version {version!r}, newer than this BratsUNet "
                                  f"reads ({FORMAT_VERSION}); update BratsUNet.")
        problems = [key for key, ok in (
            ("state_dict", _is_state_dict(content.get("state_dict"))),
            ("config", isinstance(content.get("config"), Mapping) and isinstance(content["config"].get("model"),
                                                                                 Mapping)),
            ("channels", isinstance(content.get("channels"), list)
             and all(isinstance(c, str) for c in content["channels"])),
        ) if not ok]
        if problems:
            raise CheckpointError(f"Checkpoint '{path}' is incomplete (bad or missing: {', '.join(problems)}); "
                                  f"save it again.")
        return dict(content)
    if _is_state_dict(content):
        return {"format": ORIGINAL_FORMAT, "state_dict": dict(content)}
    if isinstance(content, Mapping):
        keys = ", ".join(sorted(_printable(str(key)) for key in content)[:8])
        raise CheckpointError(f"{not_valid}: it holds a dict with the keys {keys}, not network weights.")
    raise CheckpointError(f"{not_valid}: it holds a {type(content).__name__}, not network weights.")


def _storage_identity(tensor: torch.Tensor) -> tuple | None:
    """What makes two state_dict entries the same tensor (None for empty tensors, which share address 0)."""
    if tensor.numel() == 0:
        return None
    return (tensor.device, tensor.data_ptr(), tuple(tensor.shape), tensor.stride(), tensor.storage_offset())


def alias_groups(network: torch.nn.Module) -> list[list[str]]:
    """The network's state_dict keys grouped by the tensor they name, in state_dict order.

    Most groups have one key; MONAI's DynUNet registers each block twice (``input_block.*`` and
    ``skip_layers.*``), giving groups of two. The first key of a group is the one registered first.
    """
    groups: dict[Any, list[str]] = {}
    for key, tensor in _unwrap(network).state_dict().items():
        groups.setdefault(_storage_identity(tensor) or key, []).append(key)
    return list(groups.values())


def _first_conv_key(state: Mapping[str, torch.Tensor]) -> str | None:
    """The first convolution weight: the first tensor of 3+ dimensions (out, in, *kernel)."""
    return next((key for key, tensor in state.items() if tensor.ndim >= 3), None)


def _adapt_input_channels(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """The first-layer weight for ``channels`` inputs: every new input channel gets the mean of the file's
    input-channel weights times (file channels / new channels), so that an input with the same image on every
    channel gives the same first-layer response as before. Used only on explicit request."""
    total = weight.sum(dim=1, keepdim=True)
    return (total / channels).expand(-1, channels, *weight.shape[2:]).clone()


def _printable(text: str) -> str:
    """``text`` for a one-line message: a damaged file's key may hold newlines or control bytes, shown escaped."""
    return text if text.isprintable() else repr(text)[1:-1]


def _shape(tensor: torch.Tensor) -> list[int]:
    return list(tensor.shape)


def load_weights(network: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *,
                 source: str = "checkpoint", adapt_input_channels: bool = False) -> None:
    """Load ``state_dict`` into ``network`` with strict key and shape checks (CheckpointError otherwise).

    Accepted differences, which change no weight: a ``module.`` prefix on every key; a missing or present
    alias key (DynUNet's ``skip_layers.*``). With ``adapt_input_channels`` the first convolution may have a
    different number of input channels, adapted by :func:`_adapt_input_channels`; nothing else is ever
    tiled, cut or reshaped.
    """
    network = _unwrap(network)
    incoming = dict(state_dict)
    if incoming and all(key.startswith(_WRAPPER_PREFIX) for key in incoming):
        incoming = {key[len(_WRAPPER_PREFIX):]: value for key, value in incoming.items()}
    target = network.state_dict()
    first_conv = _first_conv_key(target) if adapt_input_channels else None
    mismatches: list[str] = []
    resolved: dict[str, torch.Tensor] = {}
    for group in alias_groups(network):
        expected = target[group[0]]
        present = [key for key in group if key in incoming]
        if not present:
            mismatches.append(f"{_printable(group[0])} missing (network {_shape(expected)})")
            continue
        tensor = incoming[present[0]]
        for other in present[1:]:
            if incoming[other].shape != tensor.shape or not torch.equal(incoming[other], tensor):
                mismatches.append(f"{_printable(other)} differs from {_printable(present[0])}, which it should "
                                  "alias")
        if tensor.shape != expected.shape:
            if (group[0] == first_conv and tensor.ndim == expected.ndim
                    and tensor.shape[:1] + tensor.shape[2:] == expected.shape[:1] + expected.shape[2:]):
                tensor = _adapt_input_channels(tensor, expected.shape[1])
            else:
                mismatches.append(f"{_printable(present[0])} file {_shape(tensor)} vs network {_shape(expected)}")
                continue
        resolved.update({key: tensor for key in group})
    mismatches.extend(f"{_printable(key)} unexpected (file {_shape(value)})" for key, value in incoming.items()
                      if key not in target)
    if mismatches:
        shown = "; ".join(mismatches[:_MAX_LISTED_MISMATCHES])
        more = len(mismatches) - _MAX_LISTED_MISMATCHES
        raise CheckpointError(
            f"Checkpoint '{source}' does not fit the network ({len(mismatches)} mismatching keys: {shown}"
            f"{f'; and {more} more' if more > 0 else ''}); use the config the checkpoint was trained with.")
    network.load_state_dict(resolved, strict=True)


def _names(names: Any, count: int | None, defaults: Sequence[str], prefix: str) -> list[str]:
    """``names`` if given, else ``defaults`` when their number fits, else prefix_1 .. prefix_count."""
    if names:
        return list(names)
    if count is None or count == len(defaults):
        return list(defaults)
    return [f"{prefix}_{i + 1}" for i in range(count)]


def describe_checkpoint(path: str | os.PathLike, config: str | os.PathLike | Mapping | None = None) -> dict:
    """A checkpoint's description, read from the file once and without building its network.

    The same description :func:`load_model` returns (format, source, config without file lists, channels,
    regions, training summary, parameters, epoch, library_version, created): ``parameters`` is counted from the
    stored weights (:func:`count_stored_parameters`). The file goes through :func:`load_checkpoint`'s checks, and
    a network too big for the memory is refused as :func:`load_model` refuses it, by the analytic estimate of
    :func:`BratsUNetLib.hardware.memory.check_network_memory`. This is what a process that only shows or checks a
    model (the Slicer panel) uses, so that a model file never makes it allocate the network.

    Without a network the weights cannot be matched key by key (:func:`load_model` does that); what is checked
    here is the mistake a wrong config makes most often, another number of input channels
    (:func:`check_input_channels`), because the description's channel names come from that config.
    """
    description, state_dict = _read_description(path, config)
    check_input_channels(state_dict, description["config"]["model"], source=str(path))
    return description


def _read_description(path: str | os.PathLike, config: str | os.PathLike | Mapping | None,
                      ) -> tuple[dict, dict[str, torch.Tensor]]:
    """:func:`describe_checkpoint`'s description and the file's state_dict, from one read of ``path``."""
    content = load_checkpoint(path)
    stored = content["format"] != ORIGINAL_FORMAT
    if not stored:
        if config is None:
            raise CheckpointError(f"'{path}' is an original 3DUnetCNN checkpoint; pass --config with the config "
                                  f"it was trained with.")
        config = config_for_checkpoint(load_config(config))
    else:
        try:
            config = load_config(content["config"])
        except ConfigError as exc:
            raise CheckpointError(f"The config stored in '{path}' is not valid for this BratsUNet ({exc}); "
                                  f"was it saved by a newer version?") from None
    with _naming_the_file(path, stored):
        check_network_memory(config["model"], _stored_input_shape(config))
    description = {
        "format": content["format"],
        "source": str(path),
        "config": config,
        "channels": _names(content.get("channels"), image_channel_count(config), DEFAULT_CHANNELS, "channel"),
        "regions": _names(content.get("regions"), config["model"].get("out_channels"), DEFAULT_REGIONS, "output"),
        "training": dict(content.get("training") or {}),
        "parameters": count_stored_parameters(content["state_dict"]),
        "epoch": content.get("epoch"),
        "library_version": content.get("library_version"),
        "created": content.get("created"),
    }
    return description, content["state_dict"]


# Running statistics of batch normalization: floating-point state_dict entries that are buffers, not parameters.
_NORMALIZATION_STATISTICS = ("running_mean", "running_var")


def count_stored_parameters(state_dict: Mapping[str, torch.Tensor]) -> int:
    """Number of parameter values in a state_dict, as :func:`~BratsUNetLib.models.networks.count_parameters`
    counts them on the built network: aliases of one tensor (DynUNet's ``skip_layers.*``) once, and buffers left
    out (integer ones such as ``num_batches_tracked`` or index tables, and batch normalization's statistics)."""
    seen: set = set()
    total = 0
    for key, tensor in state_dict.items():
        if not tensor.is_floating_point() or key.rsplit(".", 1)[-1] in _NORMALIZATION_STATISTICS:
            continue
        identity = _storage_identity(tensor) or (key,)
        if identity not in seen:
            seen.add(identity)
            total += tensor.numel()
    return total


def check_input_channels(state_dict: Mapping[str, torch.Tensor], model_block: Mapping, *,
                         source: str = "checkpoint") -> None:
    """Refuse (CheckpointError) weights whose first convolution takes another number of input channels than
    ``model_block["in_channels"]``, from the shapes alone (no network is built).

    The first convolution is the first weight of ``spatial_dims + 2`` dimensions (out, in, *kernel) in
    state_dict order; lower-dimensional tensors before it (a transformer's position embedding) are skipped.
    Blocks without an integer ``in_channels`` pass.
    """
    in_channels = model_block.get("in_channels")
    dims = model_block.get("spatial_dims", 3)
    if not isinstance(in_channels, int) or not isinstance(dims, int):
        return
    key = next((key for key, tensor in state_dict.items() if tensor.ndim == dims + 2), None)
    if key is not None and state_dict[key].shape[1] != in_channels:
        raise CheckpointError(
            f"Checkpoint '{source}' does not fit the network ({_printable(key)} file {_shape(state_dict[key])} takes "
            f"{state_dict[key].shape[1]} input channels, model.in_channels is {in_channels}); use the config the "
            f"checkpoint was trained with.")


def load_model(path: str | os.PathLike, config: str | os.PathLike | Mapping | None = None,
               device: str | torch.device = "cpu", *, adapt_input_channels: bool = False,
               ) -> tuple[torch.nn.Module, dict]:
    """The network of a checkpoint, in eval mode on ``device``, and its description.

    A BratsUNet checkpoint describes itself (``config`` is not used); an original 3DUnetCNN state_dict needs
    the ``config`` (path or dict) it was trained with. The description is :func:`describe_checkpoint`'s, from
    the same single read of the file, with ``parameters`` those of the network as loaded (with
    ``adapt_input_channels`` its first layer may have other inputs than the file's).
    """
    description, state_dict = _read_description(path, config)
    config = description["config"]
    with _naming_the_file(path, stored=description["format"] != ORIGINAL_FORMAT):
        network = build_network(config["model"], input_shape=_stored_input_shape(config))
    load_weights(network, state_dict, source=str(path), adapt_input_channels=adapt_input_channels)
    network = network.to(device).eval()
    return network, {**description, "parameters": count_parameters(network)}


def _stored_input_shape(config: Mapping) -> list[int] | None:
    """The spatial shape every input is resized to (``dataset.desired_shape`` without ``random_crop``), whose
    activations the memory check counts; None when inputs keep their own shape."""
    dataset = config.get("dataset") or {}
    shape = dataset.get("desired_shape") if not dataset.get("random_crop") else None
    return list(shape) if isinstance(shape, (list, tuple)) and all(isinstance(n, int) for n in shape) else None


@contextlib.contextmanager
def _naming_the_file(path: str | os.PathLike, stored: bool) -> Iterator[None]:
    """Turn a ConfigError about a config stored in the checkpoint into a CheckpointError naming the file (the user
    did not write that config); errors about a ``--config`` given with an original checkpoint (``stored`` False)
    stay about that config."""
    try:
        yield
    except ConfigError as exc:
        if not stored:
            raise
        raise CheckpointError(f"Checkpoint '{path}' describes a network that cannot be used here: {exc}") from None


def model_card(description: Mapping) -> str:
    """A few lines describing a loaded model (network, size, inputs, outputs, preprocessing, training)."""
    config = description.get("config") or {}
    model = config.get("model") or {}
    dataset = config.get("dataset") or {}
    parameters = description.get("parameters")
    lines = [f"Network: {model.get('name', '?')}"
             + (f" ({parameters:,} parameters)" if isinstance(parameters, int) else "")]
    lines.append(f"Input channels: {', '.join(description.get('channels') or [])}")
    activation = next((a for a in ("sigmoid", "softmax") if (config.get("loss") or {}).get(a)), None)
    lines.append(f"Outputs: {', '.join(description.get('regions') or [])}"
                 + (f" ({activation})" if activation else ""))
    if dataset.get("labels") is not None:
        lines.append(f"Labels: {dataset['labels']}" + (" as nested regions" if dataset.get("setup_label_hierarchy")
                                                       else ""))
    lines.append(f"Preprocessing: {_preprocessing_summary(dataset)}")
    training = dict(description.get("training") or {})
    parent, tuned_on = training.pop("fine_tuned_from", None), training.pop("fine_tuned_on", None)
    if training:
        lines.append("Training: " + ", ".join(f"{key.replace('_', ' ')} {_brief(value)}"
                                              for key, value in training.items()))
    if parent:  # the lineage of a fine-tuned model (BratsUNetLib.training.state)
        lines.append(f"Fine-tuned from: {parent}")
        if tuned_on:
            lines.append("Fine-tuned on: " + ", ".join(str(name) for name in tuned_on))
    else:
        lines.append("Training: no summary (original 3DUnetCNN checkpoint)" if description.get("format")
                     == ORIGINAL_FORMAT else "Training: no summary")
    lines.append(f"File: {description.get('source', '?')}"
                 + (f" (saved {description['created']})" if description.get("created") else ""))
    return "\n".join(lines)


def _preprocessing_summary(dataset: Mapping) -> str:
    """The dataset block's deterministic preprocessing in a few words."""
    steps = []
    if dataset.get("crop_foreground"):
        steps.append("crop to foreground")
    if dataset.get("desired_shape"):
        if dataset.get("random_crop"):
            how = "random patches of"
        else:
            how = "resize to" if dataset.get("resample") else "pad/crop to"
        steps.append(f"{how} {'x'.join(str(s) for s in dataset['desired_shape'])}")
    normalization = dataset.get("normalization", "NormalizeIntensityD")
    if normalization:
        steps.append(str(normalization))
    return ", ".join(steps) or "none"


def _brief(value: Any) -> str:
    """A training-summary value for the model card: floats to 4 significant digits, dicts inline."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return "(" + ", ".join(f"{k} {_brief(v)}" for k, v in value.items()) + ")"
    return str(value)
