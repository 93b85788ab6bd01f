"""Training a guided model: simulated clicks on the model's own prediction (``training/guided.py``), and a run
of ``train`` whose model refines and segments."""

from __future__ import annotations

import copy
import csv

import numpy as np
import pytest
import torch

from BratsUNetLib.data.images import read_case
from BratsUNetLib.guidance import GUIDANCE_CHANNELS, Click
from BratsUNetLib.inference.loaded_model import load_models
from BratsUNetLib.inference.pipeline import segment_case
from BratsUNetLib.inference.refinement import refine
from BratsUNetLib.models.checkpoint import load_checkpoint
from BratsUNetLib.phantoms.generate import MODALITIES, generate_case, write_case
from BratsUNetLib.training.guided import GuidedInputs
from BratsUNetLib.training.loop import train
from BratsUNetLib.training.settings import TrainingSettings

SHAPE = (32, 32, 32)


class SegmentsNothing(torch.nn.Module):
    def forward(self, x):
        return torch.full((x.shape[0], 3, *x.shape[2:]), -5.0)


def _batch():
    image = torch.randn(2, 4, 16, 16, 16)
    label = torch.zeros(2, 3, 16, 16, 16)
    label[:, 0, 4:12, 4:12, 4:12] = 1  # a whole tumour the network misses
    return image, label


def test_clicks_go_to_what_the_network_missed_and_the_prior_is_its_own_prediction():
    image, label = _batch()
    guided = GuidedInputs({"sigma": 1.5, "max_clicks": 3, "no_click_fraction": 0.0}, "sigmoid")
    inputs = guided.with_simulated_clicks(SegmentsNothing(), image, label, seed=1)
    assert inputs.shape == (2, 13, 16, 16, 16)
    torch.testing.assert_close(inputs[:, :4], image)
    maps = dict(zip(GUIDANCE_CHANNELS, inputs[0, 4:10]))
    peak = np.unravel_index(int(maps["WT+"].argmax()), (16, 16, 16))
    assert all(4 <= v < 12 for v in peak) and float(maps["WT+"].max()) == pytest.approx(1.0)
    assert not any(float(maps[name].abs().max()) for name in GUIDANCE_CHANNELS if name != "WT+")
    assert not inputs[:, 10:].any()  # the network's own (empty) prediction
    # The same seed gives the same clicks; without clicks the input is the automatic one.
    torch.testing.assert_close(guided.with_simulated_clicks(SegmentsNothing(), image, label, seed=1), inputs)
    never = GuidedInputs({"sigma": 1.5, "max_clicks": 3, "no_click_fraction": 1.0}, "sigmoid")
    torch.testing.assert_close(never.with_simulated_clicks(SegmentsNothing(), image, label, seed=1),
                               GuidedInputs.automatic(image))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cohort")
    cases = []
    for seed in range(4):
        paths = write_case(generate_case(SHAPE, seed=seed), folder, f"G{seed}")
        cases.append(paths)
    return cases


def guided_config(cohort):
    entries = [{"image": [str(paths[m]) for m in MODALITIES], "label": str(paths["seg"])} for paths in cohort]
    return copy.deepcopy({
        "model": {"name": "DynUNet", "spatial_dims": 3, "in_channels": 13, "out_channels": 3,
                  "kernel_size": [3, 3, 3], "strides": [1, 2, 2], "upsample_kernel_size": [2, 2],
                  "filters": [4, 8, 16]},
        "optimizer": {"name": "Adam", "lr": 0.01},
        "loss": {"name": "DiceLoss", "sigmoid": True},
        "dataset": {"name": "SegmentationDataset", "labels": [2, 1, 4], "setup_label_hierarchy": True,
                    "crop_foreground": True, "normalization": "NormalizeIntensityD",
                    "normalization_kwargs": {"channel_wise": True},
                    "training": {"random_crop": True, "desired_shape": [24, 24, 24]}},
        # Validated at native resolution, where the brain's box need not be what the network's strides divide.
        "inference": {"name": "SlidingWindowInferer", "roi_size": [24, 24, 24], "sw_batch_size": 1},
        "guidance": {"sigma": 2, "margin": 8, "max_edge": 32, "max_clicks": 3, "no_click_fraction": 0.25},
        "training": {"batch_size": 2, "n_epochs": 2},
        "training_filenames": entries[:3],
        "validation_filenames": entries[3:],
    })


def test_train_makes_a_guided_model_that_refines_and_segments(cohort, tmp_path):
    settings = TrainingSettings(device="cpu", seed=3, n_workers=0)
    train(guided_config(cohort), tmp_path / "run", settings=settings)
    checkpoint = load_checkpoint(tmp_path / "run" / "model.pth")
    assert checkpoint["epoch"] == 2 and checkpoint["channels"] == list(MODALITIES)
    assert checkpoint["config"]["guidance"]["max_clicks"] == 3
    # Validated without clicks, as it segments on its own: a Dice per region was logged.
    with open(tmp_path / "run" / "training_log.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 2 and all(0.0 <= float(row["dice_WT"]) <= 1.0 for row in rows)

    [model] = load_models([tmp_path / "run" / "model.pth"], device="cpu")
    case = cohort[3]
    result = segment_case({m: case[m] for m in MODALITIES}, [model])
    assert result.labels.shape == SHAPE
    image, affine = read_case([case[m] for m in MODALITIES])
    point = tuple(float(v) for v in (affine @ np.array([16, 16, 16, 1.0]))[:3])
    refined = refine(model, image, affine, result.labels, [Click(point, "WT", True)])
    assert refined.labels.shape == SHAPE and refined.labels.dtype == np.uint8
    outside = np.ones(SHAPE, bool)
    outside[refined.box] = False
    np.testing.assert_array_equal(refined.labels[outside], result.labels[outside])

    # The same seed, the same run: the simulated clicks come from the seed alone.
    train(guided_config(cohort), tmp_path / "again", settings=settings)
    again = load_checkpoint(tmp_path / "again" / "model.pth")["state_dict"]
    assert all(torch.equal(value, again[key]) for key, value in checkpoint["state_dict"].items())
