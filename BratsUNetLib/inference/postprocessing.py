"""From activated network outputs to what a user reads: a BraTS label map (ORIGINAL.md §3), optionally without
tiny islands, and the volume of each region in millilitres."""

from __future__ import annotations

import numpy as np

from BratsUNetLib.data.labels import flatten_labels, get_scheme, regions_to_labels, remove_small_islands
from BratsUNetLib.errors import BratsUNetError, ConfigError
from BratsUNetLib.inference.options import InferenceOptions


def label_scheme(dataset: dict, requested: str | None) -> str:
    """``requested`` if given, else BraTS 2021 when the config's labels use 3 (not 4) for enhancing tumour."""
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
                                      scheme=label_scheme(dataset, options.scheme),
                                      rule=dataset.get("label_rule") or "nested")
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

