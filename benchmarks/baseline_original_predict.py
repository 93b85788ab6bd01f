#!/usr/bin/env python3
"""What the original 3DUnetCNN's prediction does for one case, as a fresh process: the speed baseline.

    python benchmarks/baseline_original_predict.py --config CONFIG.json --model model.pth \
        --images flair.nii.gz t1.nii.gz t1ce.nii.gz t2.nii.gz --output probabilities.nii.gz [--timings T.json]

The original's steps with the BraTS 2020 config (ORIGINAL.md §1–2): MONAI ``LoadImage`` of the channels stacked
in file-list order, foreground crop (voxels above the 10th percentile of their channel in any channel, margin
1), trilinear resize to ``desired_shape`` (128³), channel-wise z-score (``NormalizeIntensityD``), the network in
eager PyTorch fp32 without gradients, sigmoid, trilinear resampling back onto the first image's grid (the
inverse of the resize, zeros outside the crop), and a float32 4-D NIfTI (x, y, z, channels). It deliberately
uses nothing of BratsUNetLib: only torch, MONAI and nibabel, as the original did. Imports are part of the
measured time, as the original paid them on every prediction.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import nibabel  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from monai import transforms  # noqa: E402
from monai.data import MetaTensor  # noqa: E402
from monai.networks import nets  # noqa: E402

IMPORTED = time.perf_counter()


class AboveChannelPercentile:
    """Foreground: voxels above the given percentile (0..1) of their own channel, in any channel."""

    def __init__(self, percentile: float):
        self.percentile = percentile

    def __call__(self, image) -> np.ndarray:
        array = np.asarray(image)
        levels = np.quantile(array.reshape(len(array), -1), self.percentile, axis=1)
        return (array > levels[:, None, None, None]).any(0, keepdims=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--model", required=True, help="a bare state_dict, as the original saved")
    parser.add_argument("--images", nargs="+", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--timings", help="write the time of each step here (JSON)")
    args = parser.parse_args()
    stages: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[name] = now - clock
        clock = now

    config = json.loads(Path(args.config).read_text())
    model_kwargs = {key: value for key, value in config["model"].items() if key != "name"}
    network = getattr(nets, config["model"]["name"])(**model_kwargs)
    network.load_state_dict(torch.load(args.model, map_location="cpu", weights_only=True))
    network.eval()
    lap("loading")

    dataset = config["dataset"]
    loaded = transforms.LoadImaged(keys="image", image_only=True, ensure_channel_first=True)({"image": args.images})
    lap("reading")

    preprocessing = transforms.Compose([
        transforms.CropForegroundd(keys="image", source_key="image", margin=1, allow_smaller=True,
                                   select_fn=AboveChannelPercentile(dataset.get("foreground_percentile", 0.1))),
        transforms.Resized(keys="image", spatial_size=dataset["desired_shape"], mode="trilinear", align_corners=False),
        transforms.NormalizeIntensityd(keys="image", **dataset.get("normalization_kwargs", {})),
    ])
    item = preprocessing(loaded)
    lap("preprocessing")

    with torch.no_grad():
        logits = network(item["image"].as_tensor()[None].float())
    lap("network")

    probabilities = transforms.Activations(sigmoid=True)(logits[0])
    # The probabilities carry the image's record of spatial steps, so that the inverse undoes exactly those.
    outputs = MetaTensor(probabilities, meta=item["image"].meta,
                         applied_operations=list(item["image"].applied_operations))
    on_reference = preprocessing.inverse({"image": outputs})["image"]
    lap("postprocessing")

    affine = nibabel.load(args.images[0]).affine
    data = np.moveaxis(on_reference.numpy().astype(np.float32), 0, -1)
    nibabel.save(nibabel.Nifti1Image(data, affine), args.output)
    lap("writing")

    if args.timings:
        Path(args.timings).write_text(json.dumps({
            "stages_s": stages, "imports_s": IMPORTED - STARTED, "in_process_s": time.perf_counter() - STARTED,
            "peak_rss_mb": _peak_rss_mb()}))
    return 0


def _peak_rss_mb() -> float:
    """VmHWM: this process's own peak resident memory (see benchlib.own_peak_rss_mb)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    sys.exit(main())
