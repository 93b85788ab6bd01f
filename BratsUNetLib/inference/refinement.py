"""Click-guided refinement: a segmentation, corrected by clicks, recomputed only where the clicks are.

``refine`` takes the case's images ``(C, X, Y, Z)`` on the reference grid, its current label map ``(X, Y, Z)`` and
the clicks (points in RAS mm, :class:`BratsUNetLib.guidance.Click`), and returns the new label map:

1. The images go through the model's own preprocessing at native resolution (its voxel order, the brain's
   bounding box, its normalization), as in training; the label map and the clicks are put on that grid.
2. The box the clicks recompute (:func:`BratsUNetLib.guidance.refinement_box`, grown to ``max_edge`` voxels per
   edge so that every click runs the network on one input shape) is cut out; the guided network
   sees its images, the click maps and the current segmentation as its prior (:func:`~.guided_input`), in one
   pass at native resolution (padded to what the network's downsampling divides).
3. Only the regions the clicks are about, and those inside them, change
   (:func:`~BratsUNetLib.guidance.keep_unclicked_regions`: the outer ones keep the current segmentation, but for
   what the regions' nesting demands). The box's region
   probabilities become labels (ORIGINAL.md §3) and replace the box of the label map; every voxel outside the
   box keeps its label. The network sees the prior, so the box's edges agree with it.

The network stays loaded between clicks (:func:`BratsUNetLib.inference.loaded_model.load_models` caches it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.data import MetaTensor

from BratsUNetLib.data.images import resample_to_reference
from BratsUNetLib.data.labels import (
    check_label_values,
    get_scheme,
    labels_to_regions,
    regions_to_labels,
)
from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.guidance import (
    Click,
    fixed_size_box,
    guided_input,
    keep_unclicked_regions,
    refinement_box,
    to_voxel_clicks,
)
from BratsUNetLib.inference.execution import activate, downsampling, network_runner
from BratsUNetLib.inference.loaded_model import LoadedModel
from BratsUNetLib.inference.options import InferenceOptions
from BratsUNetLib.inference.postprocessing import label_scheme


@dataclass
class PreparedImages:
    """A case's images through the model's preprocessing at native resolution (:func:`prepare`): ``images``
    ``(C, X', Y', Z')`` float32 on the grid ``affine`` (4×4), for the file grid ``source_affine`` / ``source_shape``.
    Kept between clicks: the images do not change while a user clicks."""

    images: torch.Tensor
    affine: np.ndarray
    source_affine: np.ndarray
    source_shape: tuple[int, int, int]


def prepare(model: LoadedModel, image: np.ndarray, affine: np.ndarray) -> PreparedImages:
    """``image`` ``(C, X, Y, Z)`` (the model's channels, on the grid ``affine``) as the model sees it: its voxel
    order, the brain's box and its normalization, as in training."""
    prepared = model.transforms(native=True)({"image": MetaTensor(image, affine=torch.as_tensor(affine))})["image"]
    return PreparedImages(prepared.as_tensor(), np.asarray(prepared.affine, dtype=np.float64),
                          np.asarray(affine, dtype=np.float64), tuple(image.shape[1:]))  # type: ignore[arg-type]


@dataclass
class RefinementResult:
    """The refined label map ``(X, Y, Z)`` uint8 on the reference grid and the box it recomputed (slices of it)."""

    labels: np.ndarray
    box: tuple[slice, slice, slice]


def check_guided(model: LoadedModel) -> dict:
    """The model's guidance options; a one-line error for a model that takes no clicks."""
    if model.guidance is None:
        raise BratsUNetError(f"The model '{model.path}' takes no clicks (its config has no \"guidance\" block); "
                             "refine with a guided model, trained with \"guidance\": {} in its config.")
    return model.guidance


def refine(model: LoadedModel, image: np.ndarray | PreparedImages, affine: np.ndarray, labels: np.ndarray,
           clicks: Sequence[Click], options: InferenceOptions | None = None) -> RefinementResult:
    """``labels`` corrected by ``clicks`` (see the module docstring). ``image`` holds the model's channels in its
    order, or is what :func:`prepare` made of them (a session of clicks prepares them once); ``labels`` uses the
    scheme of ``options.scheme`` (else the model's) and stays unchanged."""
    guidance = check_guided(model)
    options = options or InferenceOptions()
    if not clicks:
        raise BratsUNetError("No click given; add a point with --add R,A,S[:REGION] or --remove R,A,S[:REGION].")
    image_shape = image.source_shape if isinstance(image, PreparedImages) else tuple(image.shape[1:])
    if labels.shape != image_shape:
        raise BratsUNetError(f"The segmentation's grid {labels.shape} is not the images' {image_shape}; give a "
                             "segmentation of this case, on its first image's grid.")
    scheme = label_scheme(model.dataset, options.scheme)
    check_label_values(labels, [0, *get_scheme(scheme).labels], "the segmentation")
    to_voxel_clicks(clicks, affine, labels.shape)  # a point outside the image is named before any work

    # 1. The model's grid: its voxel order, the brain's box, its normalization; labels and clicks put on it.
    prepared = image if isinstance(image, PreparedImages) else prepare(model, image, affine)
    grid, shape = prepared.affine, tuple(prepared.images.shape[1:])
    prior = resample_to_reference(labels, affine, shape, grid, order=0, name="the segmentation")
    try:
        voxel_clicks = to_voxel_clicks(clicks, grid, shape)
    except BratsUNetError:
        raise BratsUNetError("A click lies outside the brain (the part of the image the model looks at); place "
                             "it on the tumour.") from None

    # 2. One pass over the box.
    box = refinement_box(voxel_clicks, labels_to_regions(prior, scheme), margin=int(guidance["margin"]),
                         max_edge=int(guidance["max_edge"]))
    # One network input shape for every click, which the network's downsampling divides as it is: a box padded
    # up to the next multiple would cost the time of the larger box (80 voxels run as 96 in a 5-level DynUNet).
    divisor = max(downsampling(model.config["model"]))
    edge = max(divisor, int(guidance["max_edge"]) // divisor * divisor)
    box = fixed_size_box(box, edge, shape)
    images = np.asarray(prepared.images[(slice(None), *box)], dtype=np.float32)
    prior_regions = labels_to_regions(prior[box], scheme)
    network_input = guided_input(images, prior_regions, voxel_clicks,
                                 sigma=float(guidance["sigma"]), offset=[s.start for s in box])
    batch = torch.from_numpy(network_input).unsqueeze(0).to(model.device)
    run, _strategy = network_runner(model, InferenceOptions(native="whole", backend=options.backend,
                                                           precision=options.precision), True,
                                    tuple(batch.shape[1:]))
    with torch.inference_mode():
        probabilities = activate(run(batch), model.activation(options))[0].float().cpu().numpy()
    probabilities = keep_unclicked_regions(probabilities, prior_regions, {click.region for click in clicks})

    # 3. Labels in the box, the rest as it was, on the file's grid.
    recomputed = np.zeros(shape, np.uint8)
    recomputed[box] = 1
    answer = np.zeros(shape, np.uint8)
    answer[box] = regions_to_labels(probabilities, threshold=options.threshold, scheme=scheme,
                                    rule=model.dataset.get("label_rule") or "nested")
    on_file = resample_to_reference(recomputed, grid, labels.shape, affine, order=0).astype(bool)
    refined = labels.astype(np.uint8, copy=True)
    refined[on_file] = resample_to_reference(answer, grid, labels.shape, affine, order=0)[on_file]
    where = np.argwhere(on_file)
    file_box = tuple(slice(int(a), int(b)) for a, b in zip(where.min(axis=0), where.max(axis=0) + 1))
    return RefinementResult(refined, file_box)  # type: ignore[arg-type]
