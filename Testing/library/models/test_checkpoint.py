"""Checkpoints: BratsUNet's format round trip, original 3DUnetCNN state_dicts, strict matching, safe loading,
descriptions read without building the network."""

import os
import pickle
import random

import numpy as np
import pytest
import torch

from BratsUNetLib.models.checkpoint import (
    capture_rng_state,
    check_input_channels,
    count_stored_parameters,
    describe_checkpoint,
    load_checkpoint,
    load_model,
    load_weights,
    model_card,
    restore_rng_state,
    save_checkpoint,
)
from BratsUNetLib.errors import CheckpointError
from BratsUNetLib.models.networks import build_network


def small_config(filters=(4, 8, 16), in_channels=4) -> dict:
    """A tiny DynUNet config (DynUNet, like the original's, has skip_layers.* alias keys)."""
    return {
        "model": {"name": "DynUNet", "spatial_dims": 3, "in_channels": in_channels, "out_channels": 3,
                  "kernel_size": [3, 3, 3], "strides": [1, 2, 2], "upsample_kernel_size": [2, 2],
                  "filters": list(filters), "deep_supervision": False},
        "optimizer": {"name": "Adam", "lr": 0.01},
        "loss": {"name": "DiceLoss", "sigmoid": True},
        "dataset": {"name": "SegmentationDataset", "labels": [2, 1, 4], "setup_label_hierarchy": True,
                    "desired_shape": [32, 32, 32], "crop_foreground": True, "resample": True},
        "training": {"n_epochs": 3},
        "training_filenames": [{"image": [f"channel{i}.nii" for i in range(in_channels)], "label": "seg.nii"}],
    }


def seeded_network(seed: int, config: dict | None = None) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network((config or small_config())["model"])


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def assert_weights_differ(a: torch.nn.Module, b: torch.nn.Module) -> None:
    assert not torch.equal(a.state_dict()["input_block.conv1.conv.weight"],
                           b.state_dict()["input_block.conv1.conv.weight"])


# ---------------------------------------------------------------------------- original bare state_dicts

def without_aliases(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith("skip_layers.")}


@pytest.mark.parametrize("variant", ["with aliases", "without aliases", "module prefix",
                                     "module prefix without aliases"])
def test_original_state_dict_loads_bit_exactly(tmp_path, variant):
    source = seeded_network(1)
    state = source.state_dict()
    assert any(k.startswith("skip_layers.") for k in state)  # the case this test is about
    if "without aliases" in variant:
        state = without_aliases(state)
    if "module prefix" in variant:
        state = {f"module.{k}": v for k, v in state.items()}
    path = tmp_path / "model.pth"
    torch.save(state, path)

    target = seeded_network(2)
    assert_weights_differ(source, target)
    load_weights(target, load_checkpoint(path)["state_dict"], source=str(path))
    assert_same_weights(source, target)

    network, description = load_model(path, config=small_config())
    assert_same_weights(source, network)
    assert not network.training
    assert description["format"] == "3dunetcnn"
    assert description["channels"] == ["flair", "t1", "t1ce", "t2"]
    assert description["regions"] == ["WT", "TC", "ET"]
    assert "training_filenames" not in description["config"]


def test_state_dict_saved_from_a_data_parallel_model_loads(tmp_path):
    source = seeded_network(1)
    path = tmp_path / "model.pth"
    torch.save(torch.nn.DataParallel(source).state_dict(), path)
    network, _ = load_model(path, config=small_config())
    assert_same_weights(source, network)


def test_original_checkpoint_without_config_asks_for_it(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(seeded_network(1).state_dict(), path)
    with pytest.raises(CheckpointError, match="is an original 3DUnetCNN checkpoint; pass --config with the config "
                                              "it was trained with"):
        load_model(path)


def test_shape_mismatch_names_keys_and_both_shapes(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(seeded_network(1, small_config(filters=(4, 8, 16))).state_dict(), path)
    with pytest.raises(CheckpointError) as error:
        load_model(path, config=small_config(filters=(6, 8, 16)))
    message = str(error.value)
    assert "input_block.conv1.conv.weight file [4, 4, 3, 3, 3] vs network [6, 4, 3, 3, 3]" in message
    assert "and " in message and " more" in message  # long lists are cut
    assert message.count(" vs network ") == 5
    assert "\n" not in message


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = without_aliases(seeded_network(1).state_dict())
    del state["output_block.conv.conv.bias"]
    state["extra_head.weight"] = torch.zeros(2, 2)
    path = tmp_path / "model.pth"
    torch.save(state, path)
    target = seeded_network(2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError) as error:
        load_weights(target, load_checkpoint(path)["state_dict"], source=str(path))
    message = str(error.value)
    assert "output_block.conv.conv.bias missing (network [3])" in message
    assert "extra_head.weight unexpected (file [2, 2])" in message
    assert "2 mismatching keys" in message
    # Nothing was loaded: no half-loaded network.
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_first_layer_channels_differ_only_with_explicit_adaptation(tmp_path):
    source = seeded_network(1)
    path = tmp_path / "model.pth"
    torch.save(source.state_dict(), path)
    two_channels = small_config(in_channels=2)
    with pytest.raises(CheckpointError, match=r"input_block.conv1.conv.weight file \[4, 4, 3, 3, 3\] vs network "
                                              r"\[4, 2, 3, 3, 3\]"):
        load_model(path, config=two_channels)

    network, _ = load_model(path, config=two_channels, adapt_input_channels=True)
    old = source.state_dict()["input_block.conv1.conv.weight"]
    new = network.state_dict()["input_block.conv1.conv.weight"]
    assert new.shape == (4, 2, 3, 3, 3)
    # The same image on every channel gives the same first-layer response as before.
    torch.testing.assert_close(new.sum(dim=1), old.sum(dim=1))
    for key, value in source.state_dict().items():
        if key not in ("input_block.conv1.conv.weight", "skip_layers.downsample.conv1.conv.weight"):
            assert torch.equal(network.state_dict()[key], value), key


# -------------------------------------------------------------------------------- BratsUNet checkpoints

def test_bratsunet_checkpoint_round_trip_gives_the_same_outputs(tmp_path):
    config = small_config()
    source = seeded_network(3, config).eval()
    path = save_checkpoint(tmp_path / "model_best.pth", source, config=config,
                           channels=["flair", "t1", "t1ce", "t2"],
                           training={"cases": 1, "epochs": 3, "best_val_loss": np.float32(0.25),
                                     "history": np.array([0.5, 0.25])})
    assert sorted(os.listdir(tmp_path)) == ["model_best.pth"]  # no temporary file left behind

    network, description = load_model(path)
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 4, 32, 32, 32, generator=generator)
    with torch.no_grad():
        assert torch.equal(source(image), network(image))
    assert description["format"] == "bratsunet"
    assert description["training"] == {"cases": 1, "epochs": 3, "best_val_loss": 0.25, "history": [0.5, 0.25]}
    assert description["config"]["model"] == config["model"]
    assert "training_filenames" not in description["config"]
    assert description["parameters"] == sum(p.numel() for p in source.parameters())

    card = model_card(description)
    for fragment in ("DynUNet", f"{description['parameters']:,} parameters", "flair, t1, t1ce, t2",
                     "WT, TC, ET (sigmoid)", "resize to 32x32x32", "cases 1", "best val loss 0.25"):
        assert fragment in card


def test_checkpoint_keeps_optimizer_scheduler_epoch_and_random_state(tmp_path):
    config = small_config()
    network = seeded_network(3, config)
    optimizer = torch.optim.Adam(network.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=1)
    network(torch.randn(1, 4, 32, 32, 32)).mean().backward()
    optimizer.step()
    scheduler.step(1.0)
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    path = save_checkpoint(tmp_path / "model.pth", network, config=config, channels=["flair", "t1", "t1ce", "t2"],
                           optimizer=optimizer, scheduler=scheduler, epoch=7, rng_state=capture_rng_state())
    expected = (random.random(), np.random.rand(), torch.rand(1))

    content = load_checkpoint(path)  # weights_only=True: every value is a plain type
    assert content["epoch"] == 7
    resumed = torch.optim.Adam(seeded_network(4, config).parameters(), lr=0.01)
    resumed.load_state_dict(content["optimizer"])
    assert torch.equal(resumed.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert content["scheduler"]["last_epoch"] == scheduler.state_dict()["last_epoch"]
    restore_rng_state(content["rng_state"])
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])


def test_channel_names_must_match_the_network(tmp_path):
    with pytest.raises(CheckpointError, match="3 channel names"):
        save_checkpoint(tmp_path / "model.pth", seeded_network(1), config=small_config(),
                        channels=["flair", "t1", "t2"])
    assert not (tmp_path / "model.pth").exists()


def test_checkpoint_from_a_newer_bratsunet_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "model.pth", seeded_network(1), config=small_config(),
                           channels=["flair", "t1", "t1ce", "t2"])
    content = torch.load(path, weights_only=True)
    content["format_version"] = 99
    torch.save(content, path)
    with pytest.raises(CheckpointError, match="format version 99.*update BratsUNet"):
        load_checkpoint(path)


# ------------------------------------------------------------------------ descriptions without a network

@pytest.fixture
def network_builds(monkeypatch):
    """The model blocks of every network built through the checkpoint module from now on."""
    from BratsUNetLib.models import checkpoint

    builds = []
    real = checkpoint.build_network

    def counting_build(block, **kwargs):
        builds.append(block)
        return real(block, **kwargs)

    monkeypatch.setattr(checkpoint, "build_network", counting_build)
    return builds


@pytest.mark.parametrize("kind", ["bratsunet", "original with config"])
def test_a_description_is_load_models_own_read_once_without_building_the_network(tmp_path, monkeypatch,
                                                                                  network_builds, kind):
    config = small_config()
    source = seeded_network(3, config)
    path = tmp_path / "model.pth"
    if kind == "bratsunet":
        save_checkpoint(path, source, config=config, channels=["flair", "t1", "t1ce", "t2"],
                        training={"cases": 1, "epochs": 3}, epoch=2)
        given = None
    else:
        torch.save(source.state_dict(), path)
        given = config
    reads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: reads.append(args[0]) or real_load(*args, **kwargs))

    description = describe_checkpoint(path, config=given)
    assert network_builds == [] and len(reads) == 1

    _network, loaded = load_model(path, config=given)
    assert description == loaded
    assert description["parameters"] == sum(p.numel() for p in source.parameters())
    assert model_card(description) == model_card(loaded)
    assert len(network_builds) == 1 and len(reads) == 2  # load_model too reads the file once


def test_an_original_checkpoint_without_config_is_not_described(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(seeded_network(1).state_dict(), path)
    with pytest.raises(CheckpointError, match="is an original 3DUnetCNN checkpoint; pass --config"):
        describe_checkpoint(path)


def test_a_config_with_other_input_channels_is_refused_without_building_the_network(tmp_path, network_builds):
    path = tmp_path / "model.pth"
    torch.save(seeded_network(1).state_dict(), path)
    with pytest.raises(CheckpointError) as error:
        describe_checkpoint(path, config=small_config(in_channels=2))
    assert str(error.value) == (
        f"Checkpoint '{path}' does not fit the network (input_block.conv1.conv.weight file [4, 4, 3, 3, 3] takes 4 "
        f"input channels, model.in_channels is 2); use the config the checkpoint was trained with.")
    assert network_builds == []


def test_the_input_channel_check_skips_tensors_that_are_not_convolutions():
    """A transformer's position embedding (1, patches, width) comes before its patch convolution."""
    state = {"patch_embedding.position_embeddings": torch.zeros(1, 64, 48),
             "patch_embedding.patch_embeddings.weight": torch.zeros(48, 4, 4, 4, 4)}
    check_input_channels(state, {"name": "UNETR", "in_channels": 4})
    with pytest.raises(CheckpointError, match=r"patch_embeddings.weight file \[48, 4, 4, 4, 4\] takes 4 input"):
        check_input_channels(state, {"name": "UNETR", "in_channels": 2, "spatial_dims": 3})


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_stored_parameters_are_counted_as_the_built_network_counts_them(norm):
    """Aliases (DynUNet's skip_layers.*) count once; batch normalization's running statistics and its
    num_batches_tracked are buffers, not parameters."""
    model = {**small_config()["model"], "norm_name": norm}
    network = build_network(model)
    state = network.state_dict()
    assert any(key.startswith("skip_layers.") for key in state)
    assert (norm == "batch") == any(key.endswith("running_mean") for key in state)
    assert count_stored_parameters(state) == sum(p.numel() for p in network.parameters())


def test_a_described_network_too_big_for_the_memory_is_refused_naming_the_file(tmp_path, monkeypatch,
                                                                               network_builds):
    from BratsUNetLib.hardware import memory

    path = save_checkpoint(tmp_path / "model.pth", seeded_network(1), config=small_config(),
                           channels=["flair", "t1", "t1ce", "t2"])
    monkeypatch.setattr(memory, "available_memory_bytes", lambda device="cpu": 1024)
    with pytest.raises(CheckpointError) as error:
        describe_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"Checkpoint '{path}' describes a network that cannot be used here: model: DynUNet")
    assert "of memory but 0.00 MB is available" in message and "\n" not in message
    assert network_builds == []


# -------------------------------------------------------------------------------------- refused files

class CreatesFileWithOpen:
    """Unpickling this calls open(path, "w"), i.e. creates a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


class RunsShellCommand:
    """Unpickling this runs a shell command that creates a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.system, (f"touch '{self.path}'",)


def test_missing_file_and_folder_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.pth")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("kind", ["truncated", "text", "numpy", "empty", "dict without weights"])
def test_files_that_are_not_checkpoints_are_refused(tmp_path, kind):
    path = tmp_path / "model.pth"
    if kind == "truncated":
        torch.save(seeded_network(1).state_dict(), path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        path.write_text("epoch,loss\n1,0.5\n")
    elif kind == "numpy":
        path = tmp_path / "weights.npy"
        np.save(path, np.ones((3, 3)))
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        torch.save({"epoch": 3, "loss": 0.5}, path)
    with pytest.raises(CheckpointError, match="is not a valid checkpoint") as error:
        load_model(path, config=small_config())
    assert str(path) in str(error.value)


@pytest.mark.parametrize("writer", ["torch.save", "pickle protocol 2"])
@pytest.mark.parametrize("payload", [CreatesFileWithOpen, RunsShellCommand])
def test_pickle_that_would_run_code_is_refused_and_does_nothing(tmp_path, writer, payload):
    created = tmp_path / "created_by_unpickling"
    path = tmp_path / "model.pth"
    if writer == "torch.save":
        torch.save(payload(created), path)
    else:
        path.write_bytes(pickle.dumps(payload(created), protocol=2))
    with pytest.raises(CheckpointError, match="refused because loading it would run code"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_model(path, config=small_config())
    assert not created.exists()


def test_pickle_of_a_newer_protocol_that_would_run_code_is_refused(tmp_path):
    created = tmp_path / "created_by_unpickling"
    path = tmp_path / "model.pth"
    path.write_bytes(pickle.dumps(RunsShellCommand(created), protocol=pickle.HIGHEST_PROTOCOL))
    with pytest.raises(CheckpointError, match="is not a valid checkpoint"):
        load_checkpoint(path)
    assert not created.exists()


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_special_files_are_refused_before_they_are_opened(tmp_path, kind):
    """torch.load would block on a FIFO with no writer and never finish reading /dev/zero."""
    if kind == "fifo":
        path = tmp_path / "model.pth"
        os.mkfifo(path)
        expected = "is a named pipe (FIFO), not a regular file"
    else:
        path, expected = "/dev/zero", "is a character device, not a regular file"
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"Checkpoint '{path}' {expected}; give the model file (.pth), e.g. model_best.pth."
