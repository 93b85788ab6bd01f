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
   its estimated memory fits in the memory available (:func:`.execution.whole_volume_bytes`,
   :func:`BratsUNetLib.hardware.memory.available_memory_bytes`).
   Optional mirror test-time augmentation averages the 8 flips.
4. The activated outputs are put back on the reference grid by inverting the recorded spatial steps
   (trilinear for a resize, zero outside a crop), then averaged over the models.
5. Region probabilities become a BraTS label map (ORIGINAL.md §3), optionally without tiny islands.

Arrays are channel-first: images ``(C, X, Y, Z)`` float32, probabilities ``(K, X, Y, Z)`` float32 in 0..1,
label maps ``(X, Y, Z)`` uint8, affines 4×4 RAS in millimetres.

The steps live in their own modules: the models and their preprocessing in :mod:`.loaded_model`, how the network
runs in :mod:`.execution`, labels and volumes in :mod:`.postprocessing`; writing the results in :mod:`.writing`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

from BratsUNetLib.config.validation import GUIDED_EXTRA_CHANNELS
from BratsUNetLib.data.images import read_case
from BratsUNetLib.data.preprocessing import NonFiniteValues
from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.events import ProgressReporter
from BratsUNetLib.inference.execution import activate, network_runner
from BratsUNetLib.inference.loaded_model import LoadedModel, check_ensemble
from BratsUNetLib.inference.options import InferenceOptions
from BratsUNetLib.inference.postprocessing import label_volumes_ml, probabilities_to_labels
from BratsUNetLib.modalities import canonical_channel


@dataclass
class SegmentationResult:
    """One segmented case on the reference grid (the first channel's voxels and affine)."""

    probabilities: np.ndarray  # (K, X, Y, Z) float32, activated network outputs averaged over models and flips
    affine: np.ndarray  # (4, 4) float64 RAS, the reference channel's
    labels: np.ndarray | None = None  # (X, Y, Z) uint8 label map; None when the outputs are not labels
    volumes_ml: dict[str, float] = field(default_factory=dict)  # per region (WT/TC/ET) and sub-region, in mL
    strategy: str = ""  # how the network ran (resized, or native resolution in one pass or in windows), one line
    backend: str = ""  # what ran it and at which precision, e.g. "openvino, fp32" (one per model when they differ)


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
    check_ensemble(models)
    files = _files_in_order(paths, channels, models[0].path)

    for model in models:  # resized inputs have a known shape: their engine loads while the images are read
        runner = model.forward(options.backend, options.precision)  # refuses what the machine cannot run, now
        if not model.runs_native(options):
            runner.prepare_in_background(
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

    backends = list(dict.fromkeys(model.forward(options.backend, options.precision).description for model in models))
    result = SegmentationResult(probabilities=probabilities, affine=affine, strategy="; ".join(strategies),
                                backend="; ".join(backends))
    if with_labels and models[0].dataset.get("labels"):
        result.labels = probabilities_to_labels(probabilities, models[0].dataset, options)
        result.volumes_ml = label_volumes_ml(result.labels, affine, models[0].dataset, options)
    return result


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
    if model.guidance is not None:  # a guided model without clicks: empty click maps and prior, as it was trained
        batch = torch.cat([batch, batch.new_zeros((1, GUIDED_EXTRA_CHANNELS, *batch.shape[2:]))], dim=1)
    run, strategy = network_runner(model, options, native, tuple(batch.shape[1:]))
    announce(strategy)
    activation = model.activation(options)
    summed: torch.Tensor | None = None
    with torch.inference_mode():
        for done, dims in enumerate(flips, start=1):
            flipped = torch.flip(batch, dims) if dims else batch
            output = activate(run(flipped), activation)
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

