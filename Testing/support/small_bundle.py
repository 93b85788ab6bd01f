"""A small MONAI bundle built from a seed, with the structure of the model zoo's BraTS bundle (SegResNet, the
four channels in the order T1c, T1, T2, FLAIR, z-score of the non-zero voxels, sliding windows, sigmoid TC/WT/ET
turned into labels 4 > 1 > 2) and a window of 32³ so that it runs in seconds."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import torch
from monai.networks.nets import SegResNet

ROI = [32, 32, 32]
NETWORK = {"blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1], "init_filters": 16, "in_channels": 4,
           "out_channels": 3, "dropout_prob": 0.2}
LABELLING = "$lambda x: torch.where(x[[2]] > 0, 4, torch.where(x[[0]] > 0, 1, torch.where(x[[1]] > 0, 2, 0)))"
CHANNEL_ORDER = ("t1ce", "t1", "t2", "flair")


def inference_config() -> dict:
    """A bundle's configs/inference.json, with the structure of the model zoo's BraTS bundle (a smaller window)."""
    return {
        "imports": ["$import glob", "$import os"],
        "bundle_root": ".",
        "output_dir": "$@bundle_root + '/eval'",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "image_key": "image",
        "network_def": {"_target_": "SegResNet", **NETWORK},
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": "@image_key", "image_only": False},
            {"_target_": "NormalizeIntensityd", "keys": "@image_key", "nonzero": True, "channel_wise": True},
        ]},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": ROI, "sw_batch_size": 1, "overlap": 0.5},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "sigmoid": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "@image_key",
             "meta_keys": "pred_meta_dict", "nearest_interp": False, "to_tensor": True},
            {"_target_": "AsDiscreted", "keys": "pred", "threshold": 0.5},
            {"_target_": "Lambdad", "keys": "pred", "func": LABELLING},
            {"_target_": "SaveImaged", "keys": "pred", "meta_keys": "pred_meta_dict", "output_dir": "@output_dir",
             "resample": False, "squeeze_end_dims": True},
        ]},
    }


def metadata() -> dict:
    return {"version": "0.5.2", "name": "Small BraTS bundle", "network_data_format": {
        "inputs": {"image": {"type": "image", "num_channels": 4,
                             "channel_def": {"0": "T1c", "1": "T1", "2": "T2", "3": "FLAIR"}}},
        "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 3,
                             "channel_def": {"0": "Tumor core", "1": "Whole tumor", "2": "Enhancing tumor"}}}}}


def write_bundle(path: Path, inference: dict | None = None, weights: bytes | None = None, seed: int = 0) -> Path:
    """A bundle zip ``path`` (its folder ``small_brats/`` inside): configs and random SegResNet weights."""
    if weights is None:
        torch.manual_seed(seed)
        buffer = io.BytesIO()
        torch.save(SegResNet(**NETWORK).state_dict(), buffer)
        weights = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("small_brats/configs/inference.json", json.dumps(inference or inference_config()))
        bundle.writestr("small_brats/configs/metadata.json", json.dumps(metadata()))
        bundle.writestr("small_brats/models/model.pt", weights)
        bundle.writestr("small_brats/LICENSE", "Apache-2.0 (test bundle)")
    return path
