"""Networks built from the config's model block: the original BraTS DynUNet exactly, clear errors otherwise."""

import csv
import json
from pathlib import Path

import pytest
import torch

from BratsUNetLib.config.loading import load_config
from BratsUNetLib.errors import ConfigError
from BratsUNetLib.models.networks import build_network, count_parameters

# The project's shared specification: the original BraTS 2020 config and the state_dict its model has.
# ../shared/ lies beside the checkout, on developer machines and in CI alike.
SPEC = Path(__file__).resolve().parents[4] / "shared" / "spec"

SMALL_MODEL = {"name": "DynUNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 3,
               "kernel_size": [3, 3, 3], "strides": [1, 2, 2], "upsample_kernel_size": [2, 2], "filters": [4, 8, 16]}


def test_example_config_builds_the_original_dynunet_exactly():
    network = build_network(load_config(SPEC / "brats2020_config.json")["model"])
    assert count_parameters(network) == 24_928_451

    with open(SPEC / "brats2020_dynunet_state_dict.tsv", newline="") as table:
        rows = list(csv.DictReader(table, delimiter="\t"))
    state = network.state_dict()
    assert [row["key"] for row in rows] == list(state)
    for row in rows:
        tensor = state[row["key"]]
        assert list(tensor.shape) == json.loads(row["shape"]), row["key"]
        assert str(tensor.dtype) == f"torch.{row['dtype']}" and tensor.numel() == int(row["numel"])
        # The aliases column: keys naming the very same tensor (DynUNet's skip_layers.*).
        if row["aliases"]:
            alias = state[row["aliases"]]
            assert alias.data_ptr() == tensor.data_ptr() and alias.shape == tensor.shape
    real = [row for row in rows if not row["key"].startswith("skip_layers.")]
    assert len(real) == 73 and len(rows) - len(real) == 71


def test_small_network_runs_forward():
    network = build_network(SMALL_MODEL).eval()
    with torch.no_grad():
        output = network(torch.zeros(1, 4, 32, 32, 32))
    assert output.shape == (1, 3, 32, 32, 32)


def test_other_monai_networks_are_built_by_name():
    network = build_network({"name": "UNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 3,
                             "channels": [4, 8], "strides": [2]})
    assert type(network).__name__ == "UNet" and count_parameters(network) > 0


def test_unknown_network_is_a_config_error():
    with pytest.raises(ConfigError, match=r"model\.name: 'Unett' is not a known network"):
        build_network({**SMALL_MODEL, "name": "Unett"})


def test_unknown_keyword_is_a_config_error():
    with pytest.raises(ConfigError, match=r"model\.filter: DynUNet does not accept the keyword 'filter' "
                                          r"\(did you mean 'filters'\?\)"):
        build_network({**SMALL_MODEL, "filter": [4, 8, 16]})


def test_value_rejected_by_the_constructor_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as error:
        build_network({**SMALL_MODEL, "upsample_kernel_size": [2]})
    message = str(error.value)
    assert message.startswith("model: DynUNet cannot be built with these settings") and "\n" not in message


def test_deep_supervision_is_refused():
    with pytest.raises(ConfigError, match="deep_supervision: true is not supported"):
        build_network({**SMALL_MODEL, "deep_supervision": True})


def test_a_network_too_big_for_memory_is_refused_before_its_constructor_runs(monkeypatch):
    """The size check of BratsUNetLib.hardware.memory runs first; details in test_resources.py."""
    import BratsUNetLib.models.networks as models

    built = []
    real = models.allowed_names
    monkeypatch.setattr(models, "allowed_names", lambda kind: built.append(kind) or real(kind))
    with pytest.raises(ConfigError, match=r"^model: DynUNet with filters \[100000, 200000, 400000\] has about "):
        build_network({**SMALL_MODEL, "filters": [100_000, 200_000, 400_000]})
    assert "network" not in built


def test_an_allocation_that_fails_anyway_is_a_one_line_config_error(monkeypatch):
    import BratsUNetLib.models.networks as models

    def out_of_memory(**kwargs):
        raise MemoryError

    monkeypatch.setattr(models, "allowed_names", lambda kind: {"DynUNet": out_of_memory})
    with pytest.raises(ConfigError, match=r"^model: DynUNet is too big for the memory of this machine; use a "
                                          r"smaller network \(fewer filters/channels\)\.$"):
        build_network(SMALL_MODEL)
