"""Cross-validation folds: the original's membership, the fold<k>.json files and --setup_crossval_only."""

import json

import numpy as np
import pytest

from BratsUNetLib.cli import main as cli
from BratsUNetLib.training.folds import split_folds, write_fold_configs
from BratsUNetLib.errors import ConfigError, ExitCode

CASES = [f"case{i:02d}" for i in range(10)]


def original_split(items, n_folds, seed):
    """The original's procedure, step by step: global numpy seed + shuffle of the list in place."""
    filenames = list(items)
    np.random.seed(seed)
    np.random.shuffle(filenames)
    step = int(len(filenames) / n_folds)
    folds = []
    for fold in range(n_folds):
        start = step * fold
        if fold + 1 == n_folds:
            folds.append((filenames[:start], filenames[start:]))
        else:
            folds.append((filenames[:start] + filenames[start + step:], filenames[start:start + step]))
    return folds


def test_known_list_and_seed_give_the_original_fold_membership():
    folds = split_folds(CASES, n_folds=3, seed=25)
    # Written down from the original's numpy.random.seed(25) + numpy.random.shuffle of this list.
    assert [validation for _, validation in folds] == [
        ["case05", "case01", "case03"],
        ["case08", "case00", "case02"],
        ["case09", "case07", "case06", "case04"],  # the last fold takes the remainder
    ]
    for training, validation in folds:
        assert sorted(training + validation) == CASES
        assert not set(training) & set(validation)


@pytest.mark.parametrize("n_items, n_folds, seed", [(10, 5, 25), (23, 5, 25), (7, 2, 0), (369, 5, 25), (12, 4, 99)])
def test_split_matches_the_original_procedure(n_items, n_folds, seed):
    items = [{"image": [f"c{i}_flair.nii.gz"], "label": f"c{i}_seg.nii.gz"} for i in range(n_items)]
    state = np.random.get_state()
    try:
        expected = original_split(items, n_folds, seed)
    finally:
        np.random.set_state(state)
    before = np.random.get_state()[1].copy()
    assert split_folds(items, n_folds, seed) == expected
    # The global generator is left alone and the input list is not reordered.
    assert np.array_equal(np.random.get_state()[1], before)
    assert items[0]["label"] == "c0_seg.nii.gz"


def test_too_few_cases_for_the_folds_is_a_config_error():
    with pytest.raises(ConfigError, match="3 training cases cannot be split into 5 folds"):
        split_folds(CASES[:3], n_folds=5, seed=25)


def _config(cross_validation):
    entries = [{"image": [f"/data/{c}_flair.nii.gz", f"/data/{c}_t1.nii.gz"], "label": f"/data/{c}_seg.nii.gz"}
               for c in CASES]
    return {
        "model": {"name": "UNet", "spatial_dims": 3, "in_channels": 2, "out_channels": 3, "channels": [4, 8],
                  "strides": [2]},
        "optimizer": {"name": "Adam", "lr": 0.001},
        "loss": {"name": "DiceLoss", "sigmoid": True},
        "dataset": {"name": "SegmentationDataset", "labels": [2, 1, 4], "setup_label_hierarchy": True},
        "training": {"n_epochs": 1},
        "cross_validation": cross_validation,
        "training_filenames": entries,
        "validation_filenames": entries[:2],
        "test_filenames": [{"image": entries[0]["image"]}],
    }


def test_fold_files_hold_the_config_with_their_own_lists(tmp_path):
    config = _config({"n_folds": 3, "random_seed": 25})
    paths = write_fold_configs(config, tmp_path)
    assert [p.name for p in paths] == ["fold1.json", "fold2.json", "fold3.json"]
    validations = []
    for path, (training, validation) in zip(paths, split_folds(config["training_filenames"], 3, 25)):
        fold = json.loads(path.read_text())
        assert "cross_validation" not in fold
        assert fold["training_filenames"] == training and fold["validation_filenames"] == validation
        # Other groups and blocks are kept, so each fold predicts the test group too.
        assert fold["test_filenames"] == config["test_filenames"] and fold["model"] == config["model"]
        validations += [entry["label"] for entry in validation]
    assert sorted(validations) == sorted(entry["label"] for entry in config["training_filenames"])


def test_setup_crossval_only_writes_the_folds_and_trains_nothing(tmp_path, capsys):
    config_path = tmp_path / "brats.json"
    config_path.write_text(json.dumps(_config({"n_folds": 5, "random_seed": 25})))
    code = cli.main(["train", "--config_filename", str(config_path), "--setup_crossval_only", "--progress", "none",
                     "--output_dir", str(tmp_path / "out")])
    assert code == 0
    work = tmp_path / "out" / "brats"
    assert sorted(p.name for p in work.iterdir()) == [f"fold{k}.json" for k in range(1, 6)]
    fold2 = json.loads((work / "fold2.json").read_text())
    expected = original_split(_config(None)["training_filenames"], 5, 25)[1][1]
    assert fold2["validation_filenames"] == expected


def test_setup_crossval_only_without_a_cross_validation_block_is_an_error(tmp_path, capsys):
    config = _config(None)
    del config["cross_validation"]
    config_path = tmp_path / "plain.json"
    config_path.write_text(json.dumps(config))
    code = cli.main(["train", "--config_filename", str(config_path), "--setup_crossval_only", "--progress", "none"])
    assert code == ExitCode.USER_ERROR
    assert "has no cross_validation block" in capsys.readouterr().err
    assert not (tmp_path / "plain").exists() or not any((tmp_path / "plain").iterdir())
