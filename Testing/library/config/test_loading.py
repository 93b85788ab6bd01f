"""Config files in the original 3DUnetCNN format: loading, every problem reported, defaults, the CLI check."""

import copy
import json
import os
import re
from pathlib import Path

import pytest

from BratsUNetLib.cli.main import main
from BratsUNetLib.config.allowlists import resolve_name
from BratsUNetLib.config.loading import (config_for_checkpoint, dataset_options, guidance_options, load_config,
                                         training_options)
from BratsUNetLib.config.validation import image_channel_count, validate_config
from BratsUNetLib.errors import ConfigError

# The original's BraTS 2020 example config, unmodified (the project's shared specification).
# ../shared/ lies beside the checkout, on developer machines and in CI alike.
EXAMPLE = Path(__file__).resolve().parents[4] / "shared" / "spec" / "brats2020_config.json"


@pytest.fixture
def example() -> dict:
    return json.loads(EXAMPLE.read_text())


def small_config() -> dict:
    """A valid config with a tiny DynUNet and file lists (the paths need not exist for validation)."""
    case = {"image": ["a_flair.nii.gz", "a_t1.nii.gz", "a_t1ce.nii.gz", "a_t2.nii.gz"], "label": "a_seg.nii.gz"}
    return {
        "model": {"name": "DynUNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 3,
                  "kernel_size": [3, 3, 3], "strides": [1, 2, 2], "upsample_kernel_size": [2, 2],
                  "filters": [4, 8, 16], "deep_supervision": False},
        "optimizer": {"name": "Adam", "lr": 0.001},
        "loss": {"name": "DiceLoss", "sigmoid": True},
        "dataset": {"name": "SegmentationDataset", "labels": [2, 1, 4], "setup_label_hierarchy": True,
                    "desired_shape": [32, 32, 32]},
        "training": {"n_epochs": 2},
        "training_filenames": [case, case, case],
        "test_filenames": [{"image": case["image"]}],
    }


def write(tmp_path: Path, config, name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return path


def one_problem(config: dict) -> str:
    problems = validate_config(config)
    assert len(problems) == 1, problems
    return problems[0]


# ----------------------------------------------------------------------------------------- valid configs

def test_example_config_loads_unchanged(example):
    config = load_config(EXAMPLE)
    assert config == example  # already in normalized form: nothing changed


@pytest.mark.parametrize("dataset_name", ["SegmentationDataset", "SegmentationDatasetPersistent"])
def test_both_dataset_names_are_accepted(dataset_name):
    config = small_config()
    config["dataset"]["name"] = dataset_name
    assert load_config(config)["dataset"]["name"] == dataset_name


@pytest.mark.parametrize("key, good, bad", [("label_rule", "priority", "majority"),
                                            ("native_strategy", "windows", "tiles")])
def test_how_a_model_labels_and_runs_natively_are_checked(key, good, bad):
    config = small_config()
    config["dataset"][key] = good
    assert load_config(config)["dataset"][key] == good
    config["dataset"][key] = bad
    problem = one_problem(config)
    assert f"dataset.{key}" in problem and repr(bad).strip("'") in problem


def test_cross_validation_dict_form_is_kept():
    config = small_config()
    config["cross_validation"] = {"n_folds": 3, "random_seed": 7}
    assert load_config(config)["cross_validation"] == {"n_folds": 3, "random_seed": 7}


def test_cross_validation_old_list_form_values_are_honoured():
    config = small_config()
    config["cross_validation"] = [{"folds": 3, "seed": 7}]
    assert load_config(config)["cross_validation"] == {"n_folds": 3, "random_seed": 7}


def test_cross_validation_bad_values_are_reported():
    config = small_config()
    config["cross_validation"] = [{"folds": 1, "seed": "x"}]
    problems = validate_config(config)
    assert any(p.startswith("cross_validation.n_folds: 1 is not valid") for p in problems)
    assert any(p.startswith("cross_validation.random_seed: \"x\" is not valid") for p in problems)


def test_original_zero_mean_normalization_becomes_the_monai_transform():
    config = small_config()
    config["dataset"]["normalization"] = "zero_mean"
    assert load_config(config)["dataset"]["normalization"] == "NormalizeIntensityD"


def test_load_config_does_not_modify_its_input():
    config = small_config()
    config["cross_validation"] = [{"folds": 3, "seed": 7}]
    before = copy.deepcopy(config)
    load_config(config)
    assert config == before


# ------------------------------------------------------------------------------------ specific problems

def test_unknown_block():
    config = small_config()
    config["modle"] = {}
    problem = one_problem(config)
    assert problem.startswith("modle: unknown top-level block (did you mean 'model'?)")
    assert "<group>_filenames" in problem


def test_missing_required_block():
    config = small_config()
    del config["optimizer"]
    assert one_problem(config).startswith("optimizer: required block is missing")


def test_unknown_key_in_training_names_the_known_keys():
    config = small_config()
    config["training"]["n_epoch"] = 5
    problem = one_problem(config)
    assert problem.startswith("training.n_epoch: unknown key (did you mean 'n_epochs'?)")
    assert "early_stopping_patience" in problem


def test_unknown_key_in_dataset_sub_dict():
    config = small_config()
    config["dataset"]["training"] = {"random_crp": True}
    assert one_problem(config).startswith("dataset.training.random_crp: unknown key (did you mean 'random_crop'?)")


def test_unknown_network_name_suggests_the_real_spelling():
    config = small_config()
    config["model"]["name"] = "DynUNett"
    problem = one_problem(config)
    assert problem.startswith("model.name: 'DynUNett' is not a known network (did you mean 'DynUNet'?)")
    assert "allowed:" in problem and "UNet" in problem


def test_unknown_optimizer_lists_the_allowed_optimizers():
    config = small_config()
    config["optimizer"]["name"] = "adam"
    problem = one_problem(config)
    assert "optimizer.name: 'adam' is not a known optimizer (did you mean 'Adam'?)" in problem
    assert "SGD" in problem and "AdamW" in problem


@pytest.mark.parametrize("block, key, value, expected", [
    ("dataset", "desired_shape", [128, 128], "dataset.desired_shape: [128, 128] is not valid; expected null or "
                                             "a list of 3 positive integers"),
    ("dataset", "desired_shape", [128, 0, 128], "dataset.desired_shape: [128, 0, 128] is not valid"),
    ("dataset", "labels", [2, "1", 4], "dataset.labels: [2, \"1\", 4] is not valid"),
    ("dataset", "orientation", "RAX", "dataset.orientation: \"RAX\" is not valid"),
    ("training", "n_epochs", 0, "training.n_epochs: 0 is not valid; expected a positive integer"),
    ("training", "n_epochs", True, "training.n_epochs: true is not valid"),
    ("training", "batch_size", 1.5, "training.batch_size: 1.5 is not valid"),
    ("training", "save_best", "yes", "training.save_best: \"yes\" is not valid; expected true or false"),
])
def test_wrong_types_name_block_key_value_and_what_is_allowed(block, key, value, expected):
    config = small_config()
    config[block][key] = value
    assert one_problem(config).startswith(expected)


def test_nested_labels_are_accepted():
    config = small_config()
    config["dataset"]["labels"] = [[1, 4], 2]
    assert validate_config(config) == []


def test_keyword_the_class_does_not_accept():
    config = small_config()
    config["loss"]["sigmoids"] = True
    problem = one_problem(config)
    assert problem.startswith("loss.sigmoids: DiceLoss does not accept the keyword 'sigmoids' "
                              "(did you mean 'sigmoid'?)")
    assert "include_background" in problem


def test_normalization_kwargs_are_checked_against_the_transform():
    config = small_config()
    config["dataset"]["normalization"] = "NormalizeIntensityD"
    config["dataset"]["normalization_kwargs"] = {"channelwise": True}
    assert one_problem(config).startswith(
        "dataset.normalization_kwargs.channelwise: NormalizeIntensityd does not accept the keyword 'channelwise'")


def test_augmentation_names_and_keywords_are_checked():
    config = small_config()
    config["dataset"]["spatial_augmentations"] = [{"name": "RandFlipd", "prob": 0.5, "spatial_axis": 0},
                                                  {"name": "RandFlip", "prob": 0.5}]
    assert one_problem(config).startswith("dataset.spatial_augmentations[1].name: 'RandFlip' is not a known MONAI "
                                          "dictionary transform (did you mean 'RandFlipd'?)")


def test_missing_required_keyword_and_keyword_set_by_bratsunet():
    config = small_config()
    config["inference"] = {"name": "SlidingWindowInferer", "overlap": 0.5}
    config["optimizer"]["params"] = []
    problems = validate_config(config)
    assert "inference: SlidingWindowInferer needs the keyword 'roi_size'; add \"roi_size\": <value>" in problems
    assert "optimizer.params: set by BratsUNet (the network's parameters); remove it" in problems


def test_deep_supervision_is_refused_with_advice():
    config = small_config()
    config["model"]["deep_supervision"] = True
    problem = one_problem(config)
    assert problem.startswith("model.deep_supervision: true is not supported") and "set it to false" in problem


def test_file_list_problems():
    config = small_config()
    config["training_filenames"][1] = {"image": ["only_one.nii.gz"], "lable": "seg.nii.gz"}
    problems = validate_config(config)
    assert "training_filenames[1].image: 1 images given but model.in_channels is 4; give one image per input " \
           "channel" in problems
    assert any(p.startswith("training_filenames[1].lable: unknown key (did you mean 'label'?)") for p in problems)
    assert "training_filenames[1]: has no \"label\"; cases used for training need a label map" in problems


def test_every_problem_is_reported_at_once_and_load_config_joins_them_on_one_line(tmp_path):
    config = small_config()
    config["foo"] = 1
    config["training"]["n_epoch"] = 5
    config["model"]["name"] = "DynUnetX"
    config["loss"]["sigmoids"] = True
    config["dataset"]["desired_shape"] = [1, 2]
    assert len(validate_config(config)) == 5
    path = write(tmp_path, config)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert message.count("; ") >= 4
    for fragment in ("foo:", "training.n_epoch:", "model.name:", "loss.sigmoids:", "dataset.desired_shape:"):
        assert fragment in message


def test_missing_file_and_invalid_json_name_the_path(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"model": {"name": "DynUNet",\n  "in_channels": }\n}')
    with pytest.raises(ConfigError) as error:
        load_config(broken)
    assert str(broken) in str(error.value) and "line 2, column" in str(error.value)


def test_a_json_list_is_not_a_config():
    assert one_problem([1, 2]).startswith("the config must be a JSON object")


def test_resolve_name_uses_the_allowlist_only():
    import monai.transforms
    import torch

    assert resolve_name("transform", "NormalizeIntensityD", "dataset", "normalization") \
        is monai.transforms.NormalizeIntensityD
    assert resolve_name("transform", "NormalizeIntensityd", "dataset", "normalization") \
        is monai.transforms.NormalizeIntensityd
    assert resolve_name("loss", "BCEWithLogitsLoss", "loss") is torch.nn.BCEWithLogitsLoss
    assert resolve_name("scheduler", "ReduceLROnPlateau", "scheduler") is torch.optim.lr_scheduler.ReduceLROnPlateau
    # Module attributes that are not allowlisted classes are refused, whatever they are.
    for kind, name in [("optimizer", "Optimizer"), ("transform", "LoadImage"), ("network", "__builtins__"),
                       ("loss", "functional"), ("transform", "os"), ("network", "nets")]:
        with pytest.raises(ConfigError, match="is not a known"):
            resolve_name(kind, name, "block")


# ----------------------------------------------------------------------------------------- options

def test_dataset_options_fill_defaults_and_merge_the_split(example):
    config = load_config(example)
    config["dataset"]["training"] = {"random_crop": True}
    config["dataset"]["validation"] = {"desired_shape": [96, 96, 96]}
    training = dataset_options(config, "training")
    validation = dataset_options(config, "validation")
    assert training["random_crop"] is True and training["desired_shape"] == [128, 128, 128]
    assert validation["random_crop"] is False and validation["desired_shape"] == [96, 96, 96]
    assert training["foreground_percentile"] == 0.1 and training["orientation"] is None
    assert training["spatial_augmentations"] == [] and "training" not in training
    assert training["normalization_kwargs"] == {"channel_wise": True, "nonzero": False}


def test_training_options_fill_defaults(example):
    options = training_options(load_config(example))
    assert options["n_epochs"] == 250 and options["save_best"] is True
    assert options["training_iterations_per_epoch"] == 1 and options["test_input"] == 1
    assert training_options({"training": {}})["n_epochs"] == 1000


def test_config_for_checkpoint_drops_file_lists():
    config = load_config(small_config())
    stored = config_for_checkpoint(config)
    assert "training_filenames" not in stored and "test_filenames" not in stored
    assert stored["model"] == config["model"] and "training_filenames" in config


# ---------------------------------------------------------------------------------- validate-config CLI

def test_validate_config_command_ok_on_the_example(capsys):
    assert main(["validate-config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: DynUNet (24,928,451 parameters)")
    assert "SegmentationDataset" in out


def test_validate_config_command_counts_cases_per_group(tmp_path, capsys):
    assert main(["validate-config", str(write(tmp_path, small_config()))]) == 0
    out = capsys.readouterr().out
    assert "training 3 cases" in out and "test 1 cases" in out


def test_validate_config_command_reports_several_problems_and_exits_2(tmp_path, capsys):
    config = small_config()
    config["training"]["n_epoch"] = 5
    config["optimizer"]["name"] = "Adamm"
    config["dataset"]["labels"] = "2,1,4"
    path = write(tmp_path, config)
    assert main(["validate-config", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines[-1] == f"3 problems found in {path}."
    assert {line.split(": ", 2)[1] for line in lines[:-1]} == {"training.n_epoch", "optimizer.name", "dataset.labels"}
    assert captured.out == ""


def test_validate_config_command_reports_values_only_the_constructor_rejects(tmp_path, capsys):
    config = small_config()
    config["model"]["upsample_kernel_size"] = [2]  # one fewer than strides[1:]
    assert main(["validate-config", str(write(tmp_path, config))]) == 2
    err = capsys.readouterr().err
    assert "model: DynUNet cannot be built with these settings" in err and "Traceback" not in err


def test_validate_config_command_bad_json_is_one_line_error(tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert main(["validate-config", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not valid JSON" in err


def test_validate_config_command_json_mode_emits_one_result_line(tmp_path, capsys):
    config = small_config()
    config["training"]["n_epoch"] = 5
    assert main(["validate-config", "--progress", "json", str(write(tmp_path, config))]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["event"] == "result" and event["ok"] is False and len(event["problems"]) == 1


# ------------------------------------------------------------ hostile values: validate-config == train

def _nan_lr(config):
    config["optimizer"]["lr"] = float("nan")


def _infinite_lr(config):
    config["optimizer"]["lr"] = float("inf")


def _negative_lr(config):
    config["optimizer"]["lr"] = -0.01


def _bad_betas(config):
    config["optimizer"]["betas"] = [0.9, 1.5]


def _scheduler_factor(config):
    config["scheduler"] = {"name": "ReduceLROnPlateau", "factor": 2.0}


def _nan_deep_inside(config):
    config["dataset"]["normalization_kwargs"] = {"channel_wise": True, "subtrahend": float("-inf")}


def _undividable_shape(config):
    config["dataset"]["desired_shape"] = [30, 32, 33]


def _undividable_split_shape(config):
    config["dataset"]["training"] = {"desired_shape": [18, 18, 18]}


def _single_voxel_at_the_bottom(config):
    config["dataset"]["desired_shape"] = [4, 4, 4]  # strides [1, 2, 2]: 1x1x1 at the deepest level


def _labels_against_channels(config):
    config["model"]["out_channels"] = 2  # three labels with the hierarchy give three channels


HOSTILE_VALUES = [
    (_nan_lr, "optimizer.lr: nan is not a finite number"),
    (_infinite_lr, "optimizer.lr: inf is not a finite number"),
    (_negative_lr, "optimizer.lr: -0.01 is not valid; expected a number of 0 or more"),
    (_bad_betas, "optimizer.betas: [0.9, 1.5] is not valid"),
    (_scheduler_factor, "scheduler.factor: 2.0 is not valid; expected a number between 0 and 1"),
    (_nan_deep_inside, "dataset.normalization_kwargs.subtrahend: -inf is not a finite number"),
    (_undividable_shape, "dataset.desired_shape: [30, 32, 33] cannot pass through the network: model.strides "
                         "downsample the axes by [4, 4, 4], so each edge must be a multiple of its factor; the "
                         "nearest valid shape is [32, 32, 32]"),
    (_undividable_split_shape, "dataset.training.desired_shape: [18, 18, 18] cannot pass through the network"),
    (_single_voxel_at_the_bottom, "dataset.desired_shape: [4, 4, 4] leaves a single voxel at the network's deepest "
                                  "level"),
    (_labels_against_channels, "model.out_channels is 2 but dataset.labels [2, 1, 4] with the label hierarchy "
                               "gives 3 target channels"),
]


@pytest.mark.parametrize("spoil, expected", HOSTILE_VALUES, ids=[spoil.__name__ for spoil, _ in HOSTILE_VALUES])
def test_validate_config_and_train_refuse_the_same_values_with_the_same_line(tmp_path, capsys, spoil, expected):
    config = small_config()
    spoil(config)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))  # Python writes NaN/Infinity, which Python's reader accepts
    before = sorted(tmp_path.rglob("*"))

    assert main(["validate-config", "--progress", "none", str(path)]) == 2
    checked = capsys.readouterr().err.strip().splitlines()
    assert main(["train", "--progress", "none", "--config_filename", str(path), "--nthreads", "0",
                 "--ngpus", "0"]) == 2
    trained = capsys.readouterr().err.strip().splitlines()

    assert len(checked) == 1 and len(trained) == 1, (checked, trained)
    assert checked[0].startswith("bratsunet validate-config: error: ") and expected in checked[0]
    assert trained[0].startswith("bratsunet train: error: ") and expected in trained[0]
    assert "Traceback" not in checked[0] + trained[0]
    assert sorted(tmp_path.rglob("*")) == before  # train wrote nothing


def test_load_config_refuses_nan_in_a_dict_too():
    config = small_config()
    config["optimizer"]["lr"] = float("nan")
    with pytest.raises(ConfigError, match="optimizer.lr: nan is not a finite number"):
        load_config(config)


def test_a_shape_the_network_divides_and_one_without_strides_pass():
    config = small_config()
    config["dataset"]["desired_shape"] = [64, 96, 128]
    assert validate_config(config) == []
    config["model"] = {"name": "BasicUNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 3}
    config["dataset"]["desired_shape"] = [30, 30, 30]  # no strides given: the network's own check decides
    assert validate_config(config) == []


def test_deeply_nested_json_is_one_line_not_a_recursion_error(tmp_path):
    too_deep = tmp_path / "deep.json"
    too_deep.write_text("[" * 200_000 + "]" * 200_000)  # Python's reader gives up with RecursionError
    with pytest.raises(ConfigError, match="nests its JSON too deeply to read"):
        load_config(too_deep)
    deep = tmp_path / "deeper_than_a_config.json"
    config = small_config()
    config["dataset"]["normalization_kwargs"] = json.loads("[" * 500 + "]" * 500)  # readable, but absurd
    deep.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="dataset: nested more than 32 levels deep"):
        load_config(deep)


def test_a_huge_config_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from BratsUNetLib.config import loading as config_module

    path = tmp_path / "huge.json"
    with open(path, "wb") as stream:  # sparse: 17 MB that take no disk space
        stream.truncate(17 * 2 ** 20)
    monkeypatch.setattr(Path, "read_text", lambda *a, **k: pytest.fail("the huge file was read"))
    with pytest.raises(ConfigError, match=r"is 17 MB; a config is a few kB"):
        config_module.read_config_file(path)


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_config_that_is_not_a_regular_file_is_refused_without_opening_it(tmp_path, kind):
    path = tmp_path / "config.json"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    expected = "a named pipe (FIFO)" if kind == "fifo" else "a folder"
    with pytest.raises(ConfigError, match=rf"is {re.escape(expected)}, not a regular file; give the path of"):
        load_config(path)  # a FIFO would block here if it were opened


# ------------------------------------------------------------------------------------------------ guidance

def guided_config() -> dict:
    config = small_config()
    config["model"]["in_channels"] = 13  # 4 images, 6 click maps, 3 prior regions
    config["guidance"] = {"sigma": 2.5, "margin": 12}
    return config


def test_a_guided_config_takes_its_images_and_the_guidance_channels():
    config = load_config(guided_config())
    assert guidance_options(config)["sigma"] == 2.5 and guidance_options(config)["max_edge"] == 64  # a default
    assert image_channel_count(config) == 4 and image_channel_count(small_config()) == 4
    assert guidance_options(small_config()) is None


@pytest.mark.parametrize("change, expected", [
    (lambda c: c["guidance"].update(sigma=0), "guidance.sigma: 0 is not valid; expected a positive number"),
    (lambda c: c["guidance"].update(clicks=3), "guidance.clicks: unknown key"),
    (lambda c: c["guidance"].update(no_click_fraction=1.5), "guidance.no_click_fraction: 1.5 is not valid"),
    (lambda c: c["model"].update(in_channels=4), "model.in_channels: 4 leaves no image channel"),
    (lambda c: c["model"].update(out_channels=4), "a guided model predicts the 3 regions WT, TC and ET"),
    (lambda c: c["dataset"].update(setup_label_hierarchy=False), "dataset.setup_label_hierarchy: a guided model"),
    (lambda c: c["training_filenames"][0].update(image=["a.nii.gz"] * 13),
     "13 images given but the guided network takes 4 (model.in_channels less 9 guidance channels)"),
])
def test_a_guided_config_that_cannot_work_is_refused_naming_the_key(change, expected):
    config = guided_config()
    change(config)
    problems = validate_config(config)
    assert any(expected in problem for problem in problems), problems
