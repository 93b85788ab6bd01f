"""Sizes from descriptions: network estimates close to MONAI's real counts, and enormous networks refused unbuilt."""

import pytest
import torch
from tiny_config import tiny_config

from BratsUNetLib.models import networks as models
from BratsUNetLib.hardware import memory as resources
from BratsUNetLib.errors import CheckpointError, ConfigError
from BratsUNetLib.models.networks import build_network, count_parameters

TINY_DYNUNET = {"name": "DynUNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 3,
                "kernel_size": [3, 3, 3], "strides": [1, 2, 2], "upsample_kernel_size": [2, 2], "filters": [4, 8, 16]}

# Small networks of every kind with a formula, and how close the estimate must come to the real parameter count
# (the ratio estimate / real): DynUNet is counted block by block, the others with a generic encoder-decoder.
NETWORKS = [
    (TINY_DYNUNET, 0.95, 1.05),
    ({"name": "DynUNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 3, "kernel_size": [3, 3, 3, 3],
      "strides": [1, 2, 2, 2], "upsample_kernel_size": [2, 2, 2], "filters": [8, 16, 32, 64]}, 0.95, 1.05),
    ({"name": "UNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 3, "channels": [4, 8, 16],
      "strides": [2, 2]}, 0.5, 2.0),
    ({"name": "UNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 3, "channels": [8, 16, 32, 64],
      "strides": [2, 2, 2], "num_res_units": 2}, 0.5, 2.0),
    ({"name": "AttentionUnet", "spatial_dims": 3, "in_channels": 4, "out_channels": 3, "channels": [4, 8, 16],
      "strides": [2, 2]}, 0.5, 2.0),
    ({"name": "BasicUNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 3,
      "features": [4, 4, 8, 16, 32, 4]}, 0.5, 2.0),
    ({"name": "SegResNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 3, "init_filters": 8}, 0.5, 2.0),
]

# What a hostile or mistaken checkpoint can say in a few bytes: hundreds of thousands of channels per level.
HUGE_DYNUNET = {**TINY_DYNUNET, "filters": [100_000, 200_000, 400_000]}


@pytest.mark.parametrize(("block", "low", "high"), NETWORKS, ids=lambda v: v["name"] if isinstance(v, dict) else "")
def test_estimate_is_close_to_the_real_parameter_count(block, low, high):
    estimate = resources.estimate_network(block)
    real = count_parameters(build_network(block))
    assert low <= estimate.parameters / real <= high, (estimate.parameters, real)


def test_activation_estimate_grows_with_the_input_and_counts_training_state():
    estimate = resources.estimate_network(TINY_DYNUNET)
    weights = estimate.bytes_needed()
    assert weights == estimate.parameters * 4
    small, large = estimate.bytes_needed((32, 32, 32)), estimate.bytes_needed((64, 64, 64))
    assert weights < small < large
    # Twice the edge is eight times the voxels: the activations (everything beyond the weights) grow 8-fold.
    assert (large - weights) == pytest.approx(8 * (small - weights))
    assert estimate.bytes_needed((32, 32, 32), training=True) > small


@pytest.fixture
def constructor_calls(monkeypatch):
    """Every network constructor call that build_network makes, recorded (the real constructor still runs)."""
    calls = []
    real = models.allowed_names

    def recording(kind):
        names = real(kind)
        if kind != "network":
            return names
        return {name: (lambda cls: lambda **kwargs: calls.append(kwargs) or cls(**kwargs))(cls)
                for name, cls in names.items()}

    monkeypatch.setattr(models, "allowed_names", recording)
    return calls


def test_an_enormous_network_is_refused_in_one_line_before_it_is_built(constructor_calls):
    with pytest.raises(ConfigError) as error:
        build_network(HUGE_DYNUNET)
    message = str(error.value)
    assert constructor_calls == []  # nothing was allocated
    assert "\n" not in message
    assert message.startswith("model: DynUNet with filters [100000, 200000, 400000] has about ")
    assert "TB of memory but" in message and "is available" in message
    assert "use a smaller network (fewer filters/channels)" in message
    # A small network still goes through the same door.
    build_network(TINY_DYNUNET)
    assert len(constructor_calls) == 1


def test_a_checkpoint_describing_an_enormous_network_is_refused_naming_the_file(tmp_path, constructor_calls):
    from BratsUNetLib.models.checkpoint import FORMAT, FORMAT_VERSION, load_model
    from BratsUNetLib.config.loading import config_for_checkpoint, load_config

    # A small file: a valid BratsUNet checkpoint whose stored config asks for a huge network.
    config = config_for_checkpoint(load_config({**tiny_config(16), "model": HUGE_DYNUNET}))
    path = tmp_path / "huge.pth"
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "channels": ["flair", "t1", "t1ce", "t2"],
                "config": config, "state_dict": {"weight": torch.zeros(1)}}, path)
    assert path.stat().st_size < 10_000
    with pytest.raises(CheckpointError) as error:
        load_model(path)
    message = str(error.value)
    assert constructor_calls == []
    assert message.startswith(f"Checkpoint '{path}' describes a network that cannot be used here: model: DynUNet")
    assert "of memory but" in message and "\n" not in message


def test_activations_at_the_models_input_shape_count(monkeypatch):
    """A network whose weights fit but whose pass at ``input_shape`` would not is refused, naming the shape."""
    estimate = resources.estimate_network(TINY_DYNUNET)
    monkeypatch.setattr(resources, "available_memory_bytes", lambda device="cpu": int(estimate.bytes_needed() * 2))
    resources.check_network_memory(TINY_DYNUNET)  # the weights alone fit
    with pytest.raises(ConfigError, match=r"running it on 512x512x512 inputs would need about .* a smaller input"):
        resources.check_network_memory(TINY_DYNUNET, (512, 512, 512))


def test_unknown_memory_and_undescribed_networks_pass(monkeypatch):
    monkeypatch.setattr(resources, "available_memory_bytes", lambda device="cpu": None)
    assert resources.check_network_memory(HUGE_DYNUNET) is not None
    assert resources.estimate_network({"name": "DenseNet121"}) is None


def test_a_zero_stride_does_not_break_the_estimate():
    # The constructor refuses it; the estimate (run first) must not divide by zero on the way.
    assert resources.estimate_network({**TINY_DYNUNET, "strides": [1, 0, 2]}).parameters > 0


def test_allocations_beyond_the_memory_are_refused_with_both_amounts():
    with pytest.raises(ConfigError, match=r"^A phantom would need about 1024\.0 TB of memory but .* is available; "
                                          r"use a smaller shape\.$"):
        resources.check_allocation(2 ** 50, "A phantom", "use a smaller shape", error=ConfigError)
    resources.check_allocation(1024, "A small array", "-")
    assert resources.describe_bytes(3 * 2 ** 30) == "3.0 GB"
