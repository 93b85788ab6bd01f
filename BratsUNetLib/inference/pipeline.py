"""Segmenting one case: read → preprocess → network → activation → inverse preprocessing → labels.

The steps, for every model of an ensemble:

1. The channels are read in the checkpoint's ``channels`` order by :func:`BratsUNetLib.data.images.read_case`,
   which resamples every channel onto the first (reference) channel's grid.
2. The model's own deterministic preprocessing (:func:`BratsUNetLib.data.preprocessing.deterministic_transforms`
   built from its config's validation dataset options) runs on a MetaTensor that carries the reference affine,
   so MONAI records every spatial step.
3. The network runs either on the whole preprocessed volume (as the original: resized to ``desired_shape``) or at
   native resolution (foreground crop and normalization, no resize): in one pass over the crop padded to what the
   network's downsampling divides, or with a MONAI sliding-window inferer; ``auto`` takes the single pass when
   its estimated memory fits in the memory available (:func:`whole_volume_bytes`, :func:`available_memory_bytes`).
   Optional mirror test-time augmentation averages the 8 flips.
4. The activated outputs are put back on the reference grid by inverting the recorded spatial steps
   (trilinear for a resize, zero outside a crop), then averaged over the models.
5. Region probabilities become a BraTS label map (ORIGINAL.md §3), optionally without tiny islands.

Arrays are channel-first: images ``(C, X, Y, Z)`` float32, probabilities ``(K, X, Y, Z)`` float32 in 0..1,
label maps ``(X, Y, Z)`` uint8, affines 4×4 RAS in millimetres.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from monai import transforms as mt
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer

from BratsUNetLib.errors import BratsUNetError, CheckpointError, ConfigError
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.data.cases import case_name
from BratsUNetLib.hardware.memory import available_memory_bytes
from BratsUNetLib.modalities import canonical_channel

if TYPE_CHECKING:
    from BratsUNetLib.inference.backends import Runner

ACTIVATIONS = ("sigmoid", "softmax", "none")
#: How to run the network at native resolution: ``auto`` (one whole-volume pass when it fits in memory, else
#: sliding windows), ``whole`` or ``windows``.
NATIVE_STRATEGIES = ("auto", "whole", "windows")
#: Floats an eager fp32 pass keeps alive per input voxel, per channel of the network's first convolution, at its
#: peak (the full-resolution decoder stage holds the skip connection, the upsampled features, their concatenation
#: and the convolution outputs), besides the input and output channels. Measured as process peak memory for
#: DynUNets whose first convolution has 8, 16 and 64 channels, at 96³-160³: 5.6-7.2 (benchmarks/README.md).
ACTIVATION_FLOATS_PER_WIDTH = 6
#: The share of the available memory a whole-volume pass may take: the rest covers the estimate's error (up to
#: 15 % under for small networks) and the outputs.
WHOLE_VOLUME_MEMORY_SHARE = 0.8
# Models kept loaded by a long-lived process (the Slicer worker) so that repeated clicks do not reload them.
_CACHE_SIZE = 4
_MODEL_CACHE: OrderedDict[tuple, LoadedModel] = OrderedDict()


@dataclass(frozen=True)
class InferenceOptions:
    """How to segment. ``None`` for ``activation`` / ``scheme`` / ``native`` means "as the model's config says"."""

    #: The original's ``--sliding-window``: the same as ``native="windows"``.
    sliding_window: bool = False
    #: One of :data:`NATIVE_STRATEGIES` to run at native resolution; ``None`` resizes to the model's
    #: ``desired_shape`` as it was trained (models without one run at native resolution, ``auto``).
    native: str | None = None
    tta: bool = False
    activation: str | None = None
    threshold: float = 0.5
    scheme: str | None = None
    min_island_voxels: int = 0
    #: Label a voxel where the sum of the channels exceeds the threshold (original ``--sum``); only for models
    #: whose channels are separate labels rather than a WT/TC/ET hierarchy.
    sum_then_threshold: bool = False
    #: How the network runs (:data:`BratsUNetLib.inference.backends.BACKENDS`); ``auto`` picks the fastest that agrees.
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.activation is not None and self.activation not in ACTIVATIONS:
            raise BratsUNetError(f"Unknown activation '{self.activation}'; use one of {', '.join(ACTIVATIONS)}.")
        if self.activation != "none" and not 0.0 <= self.threshold <= 1.0:
            raise BratsUNetError(f"Threshold {self.threshold} is outside 0..1, the range of the probabilities it "
                                 "is compared with.")
        if self.min_island_voxels < 0:
            raise BratsUNetError(f"--min-island-voxels must be 0 (off) or positive, got {self.min_island_voxels}.")
        if self.native is not None and self.native not in NATIVE_STRATEGIES:
            raise BratsUNetError(f"Unknown native-resolution strategy '{self.native}'; use one of "
                                 f"{', '.join(NATIVE_STRATEGIES)}.")
        if self.sliding_window and self.native not in (None, "windows"):
            raise BratsUNetError(f"--sliding-window means --native windows, which contradicts --native {self.native}; "
                                 "give one of them.")
        from BratsUNetLib.inference.backends import check_backend

        check_backend(self.backend)  # before any image is read

    @property
    def native_strategy(self) -> str | None:
        """The native-resolution strategy asked for (:data:`NATIVE_STRATEGIES`), or None: as the model was trained."""
        return "windows" if self.sliding_window else self.native


@dataclass
class SegmentationResult:
    """One segmented case on the reference grid (the first channel's voxels and affine)."""

    probabilities: np.ndarray  # (K, X, Y, Z) float32, activated network outputs averaged over models and flips
    affine: np.ndarray  # (4, 4) float64 RAS, the reference channel's
    labels: np.ndarray | None = None  # (X, Y, Z) uint8 label map; None when the outputs are not labels
    volumes_ml: dict[str, float] = field(default_factory=dict)  # per region (WT/TC/ET) and sub-region, in mL
    strategy: str = ""  # how the network ran (resized, or native resolution in one pass or in windows), one line


ORIGINAL_AXIS_CODES = "LPS"  # the voxel order of BraTS 2020 files (affine about diag(-1, -1, 1))


class LoadedModel:
    """A network in eval mode on its device with the description from its checkpoint.

    ``config`` is the normalized original-format config the network was trained with; it decides the
    preprocessing, the activation and how outputs become labels. ``channels`` is the input order.
    """

    def __init__(self, path: Path, network: torch.nn.Module, description: dict, device: torch.device):
        from BratsUNetLib.config.loading import dataset_options

        self.path = path
        self.network = network
        self.description = description
        self.device = device
        self.config: dict = description["config"]
        self.dataset: dict = dataset_options(self.config, "validation")
        # BratsUNet checkpoints record the voxel order they were trained in; the original 3DUnetCNN trained on
        # BraTS files as stored, in LPS order, so inputs stored otherwise are turned to that order first.
        self.dataset["orientation"] = self.dataset.get("orientation") or ORIGINAL_AXIS_CODES
        in_channels = self.config["model"].get("in_channels")
        self.channels: tuple[str, ...] = tuple(canonical_channel(name) for name in description["channels"])
        if in_channels is not None and int(in_channels) != len(self.channels):
            raise CheckpointError(f"Model '{path}' lists {len(self.channels)} channels ({', '.join(self.channels)}) "
                                  f"but its network takes {in_channels}; the checkpoint is inconsistent.")
        self._transforms: dict[bool, mt.Compose] = {}
        self._runners: dict[str, Runner] = {}

    def forward(self, backend: str) -> Runner:
        """The network run by ``backend`` (:func:`BratsUNetLib.inference.backends.prepare`), prepared once per loaded model."""
        from BratsUNetLib.inference.backends import prepare

        if backend not in self._runners:
            self._runners[backend] = prepare(self.network, backend=backend, device=self.device)
        return self._runners[backend]

    def transforms(self, native: bool) -> mt.Compose:
        """The deterministic preprocessing; at native resolution (no resize) when ``native``.

        The same Compose instance must preprocess and invert (MONAI checks the transform ids), hence the cache.
        """
        from BratsUNetLib.data.preprocessing import deterministic_transforms

        if native not in self._transforms:
            dataset = dict(self.dataset, desired_shape=None) if native else self.dataset
            self._transforms[native] = deterministic_transforms(dataset, keys=("image",))
        return self._transforms[native]

    def runs_native(self, options: InferenceOptions) -> bool:
        """Whether the network sees the image at native resolution: asked for, or the model resizes to nothing."""
        resized = self.dataset.get("desired_shape") and not self.dataset.get("random_crop")
        return options.native_strategy is not None or not resized

    def activation(self, options: InferenceOptions) -> str:
        """``options.activation`` if set, else what the loss says (:func:`BratsUNetLib.config.loading.activation_of`)."""
        from BratsUNetLib.config.loading import activation_of

        return options.activation or activation_of(self.config)


def load_models(paths: Sequence[str | os.PathLike], config: dict | str | os.PathLike | None = None,
                device: str | torch.device = "auto") -> list[LoadedModel]:
    """Load (or take from the cache) every model of an ensemble on ``device``.

    ``config`` (a dict or a config file) is needed only for original 3DUnetCNN checkpoints, which hold bare
    weights. Models are cached by (file, modification time, device, config) so a long-lived process loads a
    model once and reloads it when the file changes.
    """
    from BratsUNetLib.models.checkpoint import load_model
    from BratsUNetLib.config.loading import load_config
    from BratsUNetLib.hardware.devices import resolve_device

    if not paths:
        raise BratsUNetError("No model given; pass --model with a checkpoint file (.pth).")
    torch_device = resolve_device(device)
    if config is not None and not isinstance(config, Mapping):
        config = load_config(config)
    config_key = json.dumps(config, sort_keys=True, default=str) if config is not None else None
    models = []
    for path in paths:
        path = Path(path).expanduser()
        try:
            modified = path.stat().st_mtime_ns
        except OSError:
            modified = None  # load_model below explains what is wrong with the path
        key = (str(path.resolve()), modified, str(torch_device), config_key)
        model = _MODEL_CACHE.get(key)
        if model is None:
            network, description = load_model(path, config=config, device=torch_device)
            model = LoadedModel(path, network, description, torch_device)
            _MODEL_CACHE[key] = model
            while len(_MODEL_CACHE) > _CACHE_SIZE:
                _MODEL_CACHE.popitem(last=False)
        _MODEL_CACHE.move_to_end(key)
        models.append(model)
    return models


def segment_case(paths: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike],
                 models: Sequence[LoadedModel], options: InferenceOptions = InferenceOptions(),
                 reporter: ProgressReporter | None = None, with_labels: bool = True) -> SegmentationResult:
    """Segment one case with one model or the average of several (e.g. cross-validation folds).

    ``paths`` maps channel names (``flair``, ``t1``, ... or the BraTS 2023 aliases) to image files, or lists the
    files in the first model's channel order. The first model's first channel is the reference grid of
    the result. ``probabilities`` are always returned; ``labels`` and ``volumes_ml`` when ``with_labels`` and
    the model's config lists labels.
    """
    if not models:
        raise BratsUNetError("No model given; pass --model with a checkpoint file (.pth).")
    reporter = reporter or ProgressReporter("none")
    channels = models[0].channels
    _check_ensemble(models)
    files = _files_in_order(paths, channels, models[0].path)

    from BratsUNetLib.data.images import read_case
    from BratsUNetLib.data.preprocessing import NonFiniteValues

    for model in models:  # resized inputs have a known shape: their engine loads while the images are read
        if not model.runs_native(options):
            model.forward(options.backend).prepare_in_background(
                (1, len(model.channels), *model.dataset["desired_shape"]))
    image, affine = read_case(files)
    flips = _flip_dims(options.tta)
    total = len(models) * len(flips)
    reporter.start("segment", total)
    probabilities: np.ndarray | None = None
    strategies: list[str] = []

    def announce(strategy: str) -> None:  # before the network runs: a long wait should say what it waits for
        if strategy not in strategies:
            strategies.append(strategy)
            reporter.message(f"Inference: {strategy}.")

    for index, model in enumerate(models):
        order = [channels.index(name) for name in model.channels]
        # Normalization works in place, so every model but the last gets its own copy of the image.
        last_user = index == len(models) - 1 and order == list(range(len(channels)))
        channel_first = image if last_user else image[order]
        passes_before = index * len(flips)
        try:
            on_reference = _predict(model, torch.from_numpy(channel_first), affine, options, flips,
                                    lambda done, before=passes_before: reporter.advance("segment", before + done,
                                                                                        total),
                                    announce)
        except NonFiniteValues as exc:  # overflowing voxels: name the file of the channel, not its number
            raise exc.for_file(files[order[exc.channel]]) from None
        if probabilities is None:
            probabilities = on_reference
        else:
            probabilities += on_reference
    assert probabilities is not None
    probabilities /= len(models)

    result = SegmentationResult(probabilities=probabilities, affine=affine, strategy="; ".join(strategies))
    if with_labels and models[0].dataset.get("labels"):
        result.labels = probabilities_to_labels(probabilities, models[0].dataset, options)
        result.volumes_ml = label_volumes_ml(result.labels, affine, models[0].dataset, options)
    return result


def _check_ensemble(models: Sequence[LoadedModel]) -> None:
    """Models averaged together must take the same channels and predict the same outputs."""
    first = models[0]
    for model in models[1:]:
        if set(model.channels) != set(first.channels):
            raise BratsUNetError(f"Models '{first.path}' and '{model.path}' take different channels "
                                 f"({', '.join(first.channels)} vs {', '.join(model.channels)}); they cannot be "
                                 "averaged.")
        if (model.config["model"].get("out_channels") != first.config["model"].get("out_channels")
                or model.dataset.get("labels") != first.dataset.get("labels")
                or model.dataset.get("setup_label_hierarchy") != first.dataset.get("setup_label_hierarchy")):
            raise BratsUNetError(f"Models '{first.path}' and '{model.path}' predict different outputs "
                                 "(out_channels / labels); they cannot be averaged.")


def _files_in_order(paths: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike],
                    channels: Sequence[str], model: Path) -> list[str | os.PathLike]:
    """The image files in the order of the channels of ``model``; errors name the model and the missing channel."""
    if isinstance(paths, Mapping):
        given = {canonical_channel(name): path for name, path in paths.items() if path is not None}
        missing = [name for name in channels if name not in given]
        if missing:
            raise BratsUNetError(f"Model '{model}' needs the {', '.join(missing)} image(s) ({', '.join(channels)}); "
                                 f"only {', '.join(given) or 'none'} were given: give them, or choose a model "
                                 "trained on the images you have.")
        return [given[name] for name in channels]
    paths = list(paths)
    if len(paths) != len(channels):
        raise BratsUNetError(f"Model '{model}' takes {len(channels)} images ({', '.join(channels)}) but "
                             f"{len(paths)} were given: give one file per channel in that order, or choose a model "
                             "trained on the images you have.")
    return paths


def _flip_dims(tta: bool) -> list[tuple[int, ...]]:
    """Spatial axes of a (N, C, X, Y, Z) batch to mirror: none, or all 8 combinations for test-time augmentation."""
    if not tta:
        return [()]
    return [dims for count in range(4) for dims in itertools.combinations((2, 3, 4), count)]


def _predict(model: LoadedModel, image: torch.Tensor, affine: np.ndarray, options: InferenceOptions,
             flips: Sequence[tuple[int, ...]], on_pass: Callable[[int], None],
             announce: Callable[[str], None]) -> np.ndarray:
    """Activated outputs ``(K, X, Y, Z)`` of one model on the reference grid of ``image`` ``(C, X, Y, Z)``.

    ``announce`` receives the one-line description of how the network runs, before it runs.
    """
    native = model.runs_native(options)
    transforms = model.transforms(native)
    preprocessed = transforms({"image": MetaTensor(image, affine=torch.as_tensor(affine))})["image"]
    batch = preprocessed.as_tensor().unsqueeze(0).to(model.device)
    run, strategy = _runner(model, options, native, tuple(batch.shape[1:]))
    announce(strategy)
    activation = model.activation(options)
    summed: torch.Tensor | None = None
    with torch.inference_mode():
        for done, dims in enumerate(flips, start=1):
            flipped = torch.flip(batch, dims) if dims else batch
            output = _activate(run(flipped), activation)
            output = torch.flip(output, dims) if dims else output
            if summed is None:
                summed = output
            else:
                summed += output
            on_pass(done)
        assert summed is not None
        if len(flips) > 1:
            summed /= len(flips)
    averaged = summed[0].float().cpu()  # no copy for float32 outputs on the CPU
    # The outputs carry the image's record of spatial steps so that MONAI undoes exactly those steps.
    outputs = MetaTensor(averaged, meta=preprocessed.meta, applied_operations=list(preprocessed.applied_operations))
    # Without spatial steps (no crop, no resize) there is nothing to undo.
    on_reference = transforms.inverse({"image": outputs})["image"] if outputs.applied_operations else outputs
    return np.ascontiguousarray(on_reference.numpy(), dtype=np.float32)


def _runner(model: LoadedModel, options: InferenceOptions, native: bool,
            shape: tuple[int, ...]) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """A function batch → logits for preprocessed images of ``shape`` ``(C, X, Y, Z)``, and how it runs (one line).

    Resized images go through the network as they are. At native resolution the network runs on the whole
    volume, padded to a multiple of its downsampling, or in sliding windows: as ``options`` asks, else
    (``auto``) in one pass when :func:`whole_volume_bytes` fits in :data:`WHOLE_VOLUME_MEMORY_SHARE` of
    :func:`available_memory_bytes`, else in windows.
    """
    network = model.forward(options.backend)
    spatial = shape[1:]
    if not native:
        return network, f"the whole volume at the model's input size {_dims(spatial)}, as it was trained"
    divisor = _downsampling(model.config["model"])
    padded = tuple(-(-size // factor) * factor for size, factor in zip(spatial, divisor))
    strategy, reason = options.native_strategy or "auto", ""
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
    from BratsUNetLib.config.allowlists import resolve_name

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


def _downsampling(model_block: dict) -> list[int]:
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


def _activate(logits: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "sigmoid":
        return logits.sigmoid_()  # in place: the logits are not used again
    if activation == "softmax":
        return torch.softmax(logits, dim=1)
    return logits


def label_scheme(dataset: dict, requested: str | None) -> str:
    """``requested`` if given, else BraTS 2021 when the config's labels use 3 (not 4) for enhancing tumour."""
    from BratsUNetLib.data.labels import flatten_labels

    if requested:
        return requested
    values = set(flatten_labels(list(dataset.get("labels") or [])))
    return "brats2021" if 3 in values and 4 not in values else "brats2020"


def probabilities_to_labels(probabilities: np.ndarray, dataset: dict, options: InferenceOptions) -> np.ndarray:
    """A uint8 label map ``(X, Y, Z)`` from activated outputs ``(K, X, Y, Z)``.

    With the label hierarchy (WT/TC/ET channels) this is ORIGINAL.md §3 through
    :func:`BratsUNetLib.data.labels.regions_to_labels`. Without it each channel is one label of the config's
    ``labels`` list, as in the original's ``--segment``: a voxel is foreground where any channel (or, with
    ``sum_then_threshold``, the sum of the channels) exceeds the threshold, and takes the label of its most
    probable channel.
    """
    from BratsUNetLib.data.labels import regions_to_labels, remove_small_islands

    labels = list(dataset.get("labels") or [])
    if len(labels) != probabilities.shape[0]:
        raise ConfigError(f"The network predicts {probabilities.shape[0]} channels but dataset.labels lists "
                          f"{len(labels)} ({labels}); the config does not describe this model.")
    if dataset.get("setup_label_hierarchy"):
        if options.sum_then_threshold:
            raise BratsUNetError("--sum does not apply to a label hierarchy (WT/TC/ET channels are nested, not "
                                 "exclusive); leave it out.")
        if probabilities.shape[0] != 3:
            raise ConfigError(f"A label map needs the 3 region channels WT, TC, ET; this model predicts "
                              f"{probabilities.shape[0]}.")
        label_map = regions_to_labels(probabilities, threshold=options.threshold,
                                      scheme=label_scheme(dataset, options.scheme))
    else:
        if any(isinstance(item, (list, tuple)) for item in labels):
            raise ConfigError(f"dataset.labels {labels} merges several labels into one channel without a hierarchy; "
                              "such outputs have no single label to write. Use the probability maps instead.")
        foreground = (probabilities.sum(0) if options.sum_then_threshold else probabilities.max(0)) > options.threshold
        values = np.asarray(labels, dtype=np.uint8)
        label_map = np.where(foreground, values[np.argmax(probabilities, axis=0)], 0).astype(np.uint8)
    if options.min_island_voxels:
        label_map = remove_small_islands(label_map, options.min_island_voxels)
    return label_map


def label_volumes_ml(label_map: np.ndarray, affine: np.ndarray, dataset: dict,
                     options: InferenceOptions) -> dict[str, float]:
    """Volumes in millilitres: WT/TC/ET and the NCR/ED sub-regions for BraTS outputs, else one per label."""
    from BratsUNetLib.data.labels import get_scheme

    voxel_ml = abs(float(np.linalg.det(np.asarray(affine, dtype=float)[:3, :3]))) / 1000.0
    # One pass counts every label value (a BraTS case: 9 M voxels in 20 ms, against 0.15 s for masks per region).
    counts = np.bincount(np.asarray(label_map, dtype=np.uint8).ravel(order="K"), minlength=256)

    def volume(values) -> float:
        return float(sum(int(counts[value]) for value in values)) * voxel_ml

    if not dataset.get("setup_label_hierarchy"):
        return {f"label {value}": volume([value]) for value in dataset["labels"]}
    scheme = get_scheme(label_scheme(dataset, options.scheme))
    volumes = {name: volume(values) for name, values in scheme.regions.items()}
    # The enhancing sub-region is the ET region; the other two sub-regions are single labels.
    volumes["NCR"] = volume([scheme.necrotic])
    volumes["ED"] = volume([scheme.edema])
    return volumes


def write_result(result: SegmentationResult, labels_path: str | os.PathLike | None = None,
                 probabilities_path: str | os.PathLike | None = None) -> dict[str, str]:
    """Write the label map (uint8) and/or the probabilities (float32, 4-D x,y,z,K as the original).

    Both appear together or not at all (:func:`BratsUNetLib.fileio.atomic_paths`: temporary names, a journal,
    then the renames). Returns the absolute paths written, keyed ``labels`` / ``probabilities`` (for the
    ``result`` event).
    """
    from BratsUNetLib.fileio import atomic_paths
    from BratsUNetLib.data.images import write_image

    outputs: list[tuple[str, Path, np.ndarray, type]] = []
    if labels_path is not None:
        if result.labels is None:
            raise BratsUNetError("This model's outputs are not labels (its config has no dataset.labels); "
                                 "write the probabilities instead.")
        outputs.append(("labels", Path(labels_path), result.labels, np.uint8))
    if probabilities_path is not None:
        outputs.append(("probabilities", Path(probabilities_path), np.moveaxis(result.probabilities, 0, -1),
                        np.float32))
    if not outputs:
        return {}
    with atomic_paths([path for _, path, _, _ in outputs]) as temporaries:
        for (_, _, array, dtype), tmp in zip(outputs, temporaries):
            write_image(tmp, array, result.affine, dtype)
    return {key: str(path.absolute()) for key, path, _, _ in outputs}


#: How many clashing output names an error lists before it counts the rest.
_LISTED = 3


def prediction_names(first_images: Sequence[str | os.PathLike]) -> list[str]:
    """Output names for cases whose first inputs are ``first_images``, no two of which can map to one file.

    Each case is :func:`BratsUNetLib.data.cases.case_name` as the original, unless its outputs (``<name>.nii.gz`` and
    ``<name>_seg.nii.gz``, compared without case for case-insensitive file systems) would be another case's:
    then, for every case of such a clash, ``<folder>_<name>`` with the first input's folder name (cases in
    different folders whose first images share a file name), and if that still clashes ``<...>_case<N>`` with
    the case's position in the list, which is unique.
    """
    paths = [Path(path) for path in first_images]
    names = [case_name(path) for path in paths]
    for rename in (lambda i: f"{paths[i].parent.name}_{names[i]}", lambda i: f"{names[i]}_case{i + 1}"):
        clashing = _clashing(names)
        if not clashing:
            break
        for index in clashing:
            names[index] = rename(index)
    return names


def _clashing(names: Sequence[str]) -> set[int]:
    """Positions of the names whose output files (probabilities or label map) another name also gives."""
    owners: dict[str, set[int]] = {}
    for index, name in enumerate(names):
        for file_name in (name, f"{name}_seg"):
            owners.setdefault(file_name.casefold(), set()).add(index)
    return {index for owner in owners.values() if len(owner) > 1 for index in owner}


def predict_group(config: dict | str | os.PathLike, model_paths: str | os.PathLike | Sequence[str | os.PathLike],
                  group: str, output_dir: str | os.PathLike, *, options: InferenceOptions = InferenceOptions(),
                  segment: bool = False, overwrite: bool = True, skip_existing: bool = False,
                  device: str | torch.device = "auto",
                  reporter: ProgressReporter | None = None) -> list[dict[str, str]]:
    """Predict every case of the config's ``<group>_filenames`` into ``output_dir``, as the original predict.py.

    Per case ``<name>.nii.gz`` holds the activated outputs (float32, x,y,z,K) on the first input's grid, and with
    ``segment`` ``<name>_seg.nii.gz`` the uint8 label map, where ``<name>`` is from :func:`prediction_names`.
    The whole plan of outputs is checked before any work: no output may be an input of any case of the config
    (or a model, or the config); without ``overwrite`` no output may exist, except that ``skip_existing``
    skips cases whose outputs all exist. Returns one dict of written paths per predicted case.
    """
    from BratsUNetLib.config.loading import filename_groups, load_config
    from BratsUNetLib.fileio import check_not_inputs, check_output_folder, describe_paths, finish_interrupted_writes

    reporter = reporter or ProgressReporter("none")
    config_path = None if isinstance(config, Mapping) else config
    config = load_config(config)
    groups = filename_groups(config)
    key = f"{group}_filenames"
    entries = groups.get(group)
    if not entries:
        listed = sorted(name for name, cases in groups.items() if cases)
        raise ConfigError(f"The config has no cases in '{key}'; choose --group among: {', '.join(listed) or 'none'}.")
    if isinstance(model_paths, (str, os.PathLike)):
        model_paths = [model_paths]
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise BratsUNetError(f"--output_directory '{output_dir}' is a file, not a folder; give a folder (it is made "
                             "if needed).")

    # The whole plan first: every case's outputs, checked before anything is read or written.
    names = prediction_names([entry["image"][0] for entry in entries])  # load_config checked: lists of paths
    plan = []
    for name, entry in zip(names, entries):
        outputs = {"probabilities": output_dir / f"{name}.nii.gz"}
        if segment:
            outputs["labels"] = output_dir / f"{name}_seg.nii.gz"
        plan.append((name, entry, outputs))
    # prediction_names rules clashes out; this check keeps that promise whatever the names are.
    seen: set[str] = set()
    clashes = []
    for _, _, outputs in plan:
        for path in outputs.values():
            if path.name.casefold() in seen:
                clashes.append(path.name)
            seen.add(path.name.casefold())
    if clashes:
        raise BratsUNetError(f"{len(clashes)} output name(s) would be written by two cases: "
                             f"{describe_paths(clashes, _LISTED)}; rename the first image of one of those cases.")
    inputs = [("--model_filename", model) for model in model_paths]
    if config_path is not None:
        inputs.append(("--config_filename", config_path))
    for group_name, group_entries in groups.items():
        for entry in group_entries if isinstance(group_entries, list) else []:
            if not isinstance(entry, Mapping):
                continue
            inputs.extend((f"image of a case in '{group_name}_filenames'", path) for path in entry.get("image") or [])
            label = entry.get("label")
            inputs.extend((f"label of a case in '{group_name}_filenames'", path)
                          for path in (label if isinstance(label, (list, tuple)) else [label]) if path)
    check_not_inputs([(f"the output of case '{name}'", path) for name, _, outputs in plan
                      for path in outputs.values()], inputs)
    for message in finish_interrupted_writes([output_dir]):  # shown even with --progress none
        reporter.message(message) if reporter.mode != "none" else print(message, file=sys.stderr, flush=True)
    todo, existing = [], []
    for name, entry, outputs in plan:
        present = [path for path in outputs.values() if path.exists()]
        if skip_existing and len(present) == len(outputs):
            continue  # done by an earlier run
        if not overwrite:
            existing.extend(present)
        todo.append((name, entry, outputs))
    if existing:
        hint = " (or --no_overwrite to skip the cases whose outputs all exist)" if not skip_existing else ""
        raise BratsUNetError(f"{len(existing)} output(s) exist in '{output_dir}': "
                             f"{describe_paths([path.name for path in existing], _LISTED)}; pass --overwrite to "
                             f"replace them{hint}, or choose another --output_directory.")
    models = load_models(model_paths, config=config, device=device)
    check_output_folder(output_dir, "--output_directory")
    written: list[dict[str, str]] = []
    reporter.start("predict", len(entries))
    for done, (name, entry, outputs) in enumerate(todo, start=len(entries) - len(todo) + 1):
        try:
            result = segment_case(entry["image"], models, options, with_labels=segment)
        except BratsUNetError as exc:  # say which case of the list is at fault
            raise type(exc)(f"case '{name}' of '{key}': {exc}") from None
        written.append({"case": name, **write_result(result, outputs.get("labels"), outputs["probabilities"])})
        reporter.advance("predict", done, len(entries), case=name)
    return written
