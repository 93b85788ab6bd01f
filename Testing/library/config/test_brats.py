"""The BraTS training config builder: every config it builds passes the checks of ``bratsunet train``."""

from BratsUNetLib.config.brats import brats_training_config
from BratsUNetLib.training.setup import check_training_config

MODEL = {"name": "DynUNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 3, "filters": [4, 8, 16],
         "kernel_size": [3, 3, 3], "strides": [1, 2, 2], "upsample_kernel_size": [2, 2], "deep_supervision": False}
CASE = {"image": ["flair.nii.gz", "t1.nii.gz", "t1ce.nii.gz", "t2.nii.gz"], "label": "seg.nii.gz"}
TRAINING = {"batch_size": 1, "validation_batch_size": 1, "n_epochs": 2, "save_best": True, "amp": False}


def test_validation_files_are_written_only_when_given():
    """No validation key unless asked for; an empty list is written as it is (a run without validation cases)."""
    assert "validation_filenames" not in brats_training_config(MODEL, [16] * 3, TRAINING, [CASE], learning_rate=0.1)
    assert brats_training_config(MODEL, [16] * 3, TRAINING, [CASE], [], learning_rate=0.1)["validation_filenames"] == []


def test_augmentations_go_to_the_training_dataset():
    flip = {"name": "RandFlipd", "prob": 0.5, "spatial_axis": 0}
    config = brats_training_config(MODEL, [16] * 3, TRAINING, [CASE], [CASE], learning_rate=0.1,
                                   spatial_augmentations=[flip])
    assert config["dataset"]["training"] == {"spatial_augmentations": [flip]}
    assert "training" not in brats_training_config(MODEL, [16] * 3, TRAINING, [CASE], learning_rate=0.1)["dataset"]


def test_the_built_config_passes_the_training_checks():
    """A config from the builder is one ``bratsunet train`` accepts (BraTS labels as the WT/TC/ET hierarchy)."""
    config = brats_training_config(MODEL, [16, 16, 16], TRAINING, [CASE], [CASE], learning_rate=0.001)
    checked = check_training_config(config, device="cpu").config
    assert checked["dataset"]["labels"] == [2, 1, 4]
    assert checked["dataset"]["setup_label_hierarchy"] is True
