"""Fine-tuning any model from the scene with its own network, preprocessing and labels: a BratsUNet model, an
original 3DUnetCNN checkpoint of the BraTS 2020 DynUNet (with its config) and a MONAI SegResNet bundle. Each run
writes a new model beside the old one, with its lineage on its card, whose weights differ and which segments."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch
from BratsUNetSlicer import results, scene_io, training
from small_bundle import write_bundle

from BratsUNetLib.models.checkpoint import load_checkpoint
from BratsUNetLib.models.networks import build_network
from BratsUNetLib.models.store import import_model

SHARED_CONFIG = Path(__file__).resolve().parents[2].parent / "shared" / "spec" / "brats2020_config.json"
# The panel's network fields say "brats" at 32³: for a model being fine-tuned they must not matter.
SETTINGS = training.TrainingOptions(epochs=1, learning_rate=0.01, patch_size=32, validation_cases=1,
                                    network="brats", device="cpu")


@pytest.fixture
def volumes(scene, phantom_cases):
    """Both generated cases in the scene with their reference segmentations (training cases); the first case's
    four volumes by modality."""
    loaded = {}
    for case_id, paths in phantom_cases.items():
        nodes = {m: scene_io.load_volume(paths[m], f"{case_id}_{m}") for m in scene_io.MODALITIES}
        results.import_segmentation(paths["seg"], nodes["flair"], "brats2020", name=f"{case_id}_seg")
        loaded[case_id] = nodes
    return next(iter(loaded.values()))


def fine_tune_and_check(logic, volumes, folder: Path, parent: Path, config: Path | str = "") -> dict:
    """Fine-tune ``parent`` for one epoch; check the new model and return its checkpoint's content."""
    before = load_checkpoint(parent)
    parent_weights = before.get("state_dict", before)
    parent_bytes = parent.read_bytes()
    new = Path(logic.train(str(folder), SETTINGS, pretrainedModel=str(parent), pretrainedConfig=str(config),
                           wait=True))
    assert new.parent.parent == folder and parent.read_bytes() == parent_bytes  # beside the old one, never over it
    content = load_checkpoint(new)
    weights = content["state_dict"]
    assert weights.keys() == parent_weights.keys()  # the parent's own network
    assert any(not torch.equal(weights[key], parent_weights[key]) for key in weights)  # and it learned
    assert content["training"]["fine_tuned_from"] == str(parent.resolve())
    assert len(content["training"]["fine_tuned_on"]) == 1  # one case trains, the other validates
    card = logic.models.card(str(new))
    assert f"Fine-tuned from: {parent.resolve()}" in card
    node = logic.segment(**volumes, model=str(new), device="cpu", wait=True)
    assert node.GetSegmentation().GetNumberOfSegments() == 3
    return content


def test_a_bratsunet_model_is_fine_tuned_as_it_was_built(scene, logic, volumes, small_model, tmp_path):
    content = fine_tune_and_check(logic, volumes, tmp_path / "run", small_model)
    parent = load_checkpoint(small_model)
    assert content["config"]["model"] == parent["config"]["model"]  # not the panel's "brats" network
    assert content["config"]["dataset"]["desired_shape"] == parent["config"]["dataset"]["desired_shape"]
    assert content["channels"] == parent["channels"]


def test_an_original_brats2020_dynunet_checkpoint_is_fine_tuned_with_its_config(scene, logic, volumes, tmp_path):
    """The BraTS 2020 DynUNet of ``brats2020_config.json`` (24.9 M parameters), saved as 3DUnetCNN saved it (a
    bare state_dict) with its config; only its input size is made 64³ so that one epoch takes seconds."""
    config = json.loads(SHARED_CONFIG.read_text())
    config["dataset"]["desired_shape"] = [64, 64, 64]
    config_path = tmp_path / "brats2020_config.json"
    config_path.write_text(json.dumps(config))
    torch.manual_seed(0)
    parent = tmp_path / "original_model.pth"
    torch.save(build_network(config["model"]).state_dict(), parent)
    content = fine_tune_and_check(logic, volumes, tmp_path / "run", parent, config_path)
    assert content["config"]["model"] == config["model"]
    assert content["config"]["dataset"]["desired_shape"] == [64, 64, 64]


def test_a_monai_segresnet_bundle_is_fine_tuned_on_patches_and_keeps_its_channel_order(scene, logic, volumes,
                                                                                      tmp_path):
    parent = import_model(write_bundle(tmp_path / "small_brats.zip"), "small_brats", folder=tmp_path / "models")
    before = load_checkpoint(parent)
    content = fine_tune_and_check(logic, volumes, tmp_path / "run", parent)
    assert content["config"]["model"]["name"] == "SegResNet" and content["config"]["model"] == before["config"]["model"]
    assert content["channels"] == before["channels"] == ["t1ce", "t1", "t2", "flair"]
    dataset = content["config"]["dataset"]
    assert dataset["training"] == {"random_crop": True, "desired_shape": [32, 32, 32]}  # patches for training only
    expected = {key: value for key, value in copy.deepcopy(before["config"]["dataset"]).items() if key != "orientation"}
    assert {key: value for key, value in dataset.items() if key not in ("training", "orientation")} == expected
    # The exported images were listed in the bundle's channel order.
    run_config = json.loads((tmp_path / "run" / f"{training.CONFIG_NAME}.json").read_text())
    first = run_config["training_filenames"][0]["image"]
    assert [Path(path).name.split("_")[-1] for path in first] == ["t1ce.nii.gz", "t1.nii.gz", "t2.nii.gz",
                                                                  "flair.nii.gz"]


def test_a_brats2021_model_is_fine_tuned_on_labels_with_its_own_values(scene, logic, volumes, tmp_path):
    """A model whose config labels enhancing tumour 3 (BraTS 2021: labels [2, 1, 3]) learns ET from the exported
    cases only if their enhancing tumour is written as 3, not as the scene's BraTS 2020 value 4."""
    from BratsUNetLib.models.checkpoint import save_checkpoint

    config = training.training_config(training.TrainingOptions(network="small", patch_size=32), [], [])
    config["dataset"]["labels"] = [2, 1, 3]
    torch.manual_seed(0)
    parent = save_checkpoint(tmp_path / "brats2021.pth", build_network(config["model"]), config=config,
                             channels=scene_io.MODALITIES)
    fine_tune_and_check(logic, volumes, tmp_path / "run", parent)
    run_config = json.loads((tmp_path / "run" / f"{training.CONFIG_NAME}.json").read_text())
    written = nibabel.load(run_config["training_filenames"][0]["label"])
    values = set(np.unique(np.asarray(written.dataobj)).tolist())
    assert 3 in values and 4 not in values and values <= {0, 1, 2, 3}
