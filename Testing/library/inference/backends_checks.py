"""Execution backends: every backend gives the network's logits; ``auto`` picks a fast one only when it agrees.

A tiny DynUNet keeps each ONNX export to a few seconds; one export cache is shared by the tests of this file
(exports are keyed by the network's weights and the input shape, so sharing cannot mix results up). The input is
brain-like (a bright ball in a zero background, z-scored) at 64³: large enough that runtimes summing a channel's
~2.6·10⁵ voxels in one float32 accumulation (ONNX Runtime's and OpenVINO's own instance norm) miss 1e-3.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from monai.networks.nets import DynUNet

from BratsUNetLib.inference import backends
from BratsUNetLib.errors import BratsUNetError


SHAPE = (1, 4, 64, 64, 64)


def tiny_network(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return DynUNet(3, 4, 3, kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2],
                   filters=[4, 8, 16]).eval()


@pytest.fixture
def network() -> torch.nn.Module:
    return tiny_network()


@pytest.fixture
def batch() -> torch.Tensor:
    """(1, 4, 64, 64, 64): a ball of bright, noisy 'brain' in a zero background, z-scored per channel."""
    edge = SHAPE[-1]
    grid = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, edge)] * 3, indexing="ij"))
    inside = (grid**2).sum(0) < 0.6
    image = torch.zeros(SHAPE[1:])
    image[:, inside] = 3.0 + torch.rand(SHAPE[1], int(inside.sum()), generator=torch.Generator().manual_seed(1))
    image = (image - image.mean((1, 2, 3), keepdim=True)) / image.std(dim=(1, 2, 3), keepdim=True)
    return image[None]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("exports"))


def eager(network: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return network(batch)


def onnx_files(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".onnx"))


def private_copy_of_the_export(network: torch.nn.Module, shared_cache: str, folder) -> str:
    """Copy the shared cache's export of ``network`` for SHAPE (made if needed) into ``folder``, without verdicts."""
    backends.prepare(network, SHAPE, backend="onnxruntime", cache_dir=shared_cache)
    fingerprint = backends.model_fingerprint(network)
    name = f"{fingerprint}-{'x'.join(map(str, SHAPE))}.onnx"
    shutil.copy2(os.path.join(shared_cache, name), folder / name)
    record = json.loads(open(os.path.join(shared_cache, f"{fingerprint}.json")).read())
    (folder / f"{fingerprint}.json").write_text(json.dumps({"exports": record["exports"]}))
    return name


def test_eager_backend_returns_the_network_output(network, batch):
    runner = backends.prepare(network, SHAPE, backend="eager")
    assert runner.backend == "eager"
    assert torch.equal(runner(batch), eager(network, batch))


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_exported_backend_agrees_with_eager(name, network, batch, shared_cache):
    pytest.importorskip(name)
    pytest.importorskip("onnxscript")
    runner = backends.prepare(network, SHAPE, backend=name, cache_dir=shared_cache)
    two = torch.cat([batch, batch.flip(2)])  # a batch of two runs sample by sample through the batch-1 export
    logits = runner(two)
    assert runner.backend == name
    assert logits.dtype == torch.float32 and logits.shape == (2, 3, *SHAPE[2:])
    assert (logits - eager(network, two)).abs().max() <= 1e-3
    # The export rewrote a copy: the caller's network is untouched.
    assert torch.equal(eager(network, batch), eager(tiny_network(), batch))
    assert any(isinstance(module, torch.nn.InstanceNorm3d) for module in network.modules())


def test_channels_last_agrees_with_eager_and_leaves_the_network_alone(network, batch):
    runner = backends.prepare(network, backend="channels_last")
    assert (runner(batch) - eager(network, batch)).abs().max() <= 1e-3
    first_conv = next(module for module in network.modules() if isinstance(module, torch.nn.Conv3d))
    assert first_conv.weight.is_contiguous()  # the caller's network keeps its memory layout


def test_amp_gives_float32_logits_close_to_eager(network, batch):
    logits = backends.prepare(network, backend="amp")(batch)
    reference = eager(network, batch)
    assert logits.dtype == torch.float32 and logits.shape == reference.shape
    # bf16 keeps ~3 significant digits: close, but not the 1e-3 of the fp32 backends.
    assert (logits - reference).abs().max() <= 0.05 * reference.abs().max()


@pytest.mark.skipif(not os.environ.get("BRATSUNET_SLOW_TESTS"),
                    reason="torch.compile needs minutes of compilation on a 2-core CPU; set BRATSUNET_SLOW_TESTS=1")
def test_compile_agrees_with_eager(network, batch):
    runner = backends.prepare(network, backend="compile")
    assert (runner(batch) - eager(network, batch)).abs().max() <= 1e-3


def test_auto_falls_back_to_eager_without_the_optional_packages(monkeypatch, network, batch, tmp_path):
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` fail as if not installed
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setattr(backends, "AUTO_MIN_FLOPS", 0)  # the tiny network would otherwise stay eager anyway
    assert "openvino" not in backends.installed_backends()
    runner = backends.prepare(network, SHAPE, backend="auto", cache_dir=tmp_path)
    assert torch.equal(runner(batch), eager(network, batch))
    assert runner.backend == "eager"
    assert onnx_files(tmp_path) == []
    with pytest.raises(BratsUNetError, match=r"not installed.*bratsunet\[fast\]"):
        backends.prepare(network, SHAPE, backend="openvino", cache_dir=tmp_path)


def test_auto_keeps_cheap_networks_eager_without_exporting(monkeypatch, network, batch, tmp_path):
    runner = backends.prepare(network, backend="auto", cache_dir=tmp_path)
    assert torch.equal(runner(batch), eager(network, batch))
    assert runner.backend == "eager"
    assert onnx_files(tmp_path) == []

    # The network's cost is remembered: a later process neither counts it again nor exports, at any input size.
    from torch.utils import flop_counter

    monkeypatch.setattr(flop_counter, "FlopCounterMode", lambda *args, **kwargs: pytest.fail("counted"))
    larger = torch.nn.functional.interpolate(batch, scale_factor=1.5)
    later = backends.prepare(network, backend="auto", cache_dir=tmp_path)
    assert torch.equal(later(larger), eager(network, larger))
    assert later.backend == "eager"
    assert onnx_files(tmp_path) == []


def test_auto_checks_once_then_remembers_the_verdict(monkeypatch, network, batch, shared_cache):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    monkeypatch.setattr(backends, "AUTO_MIN_FLOPS", 0)
    notes: list[str] = []
    runner = backends.prepare(network, backend="auto", cache_dir=shared_cache, log=notes.append)
    reference = eager(network, batch)
    first = runner(batch)
    chosen = runner.backend
    assert chosen in ("openvino", "onnxruntime")
    assert torch.equal(first, reference)  # the checking call answers with eager's own logits
    assert any(f"Using {chosen}" in note for note in notes)
    record = json.loads((backends.Path(shared_cache) / f"{runner.fingerprint}.json").read_text())
    assert any(key.startswith(chosen) and verdict["agrees"] for key, verdict in record["verdicts"].items())

    # A later process with the same weights starts the fast backend at once: no eager pass, no new export.
    def no_eager(*args):
        raise AssertionError("eager forward pass during a remembered verdict")
    monkeypatch.setattr(network, "forward", no_eager)
    monkeypatch.setattr(backends, "export_onnx", no_eager)
    again = backends.prepare(network, backend="auto", cache_dir=shared_cache)
    assert (again(batch) - reference).abs().max() <= 1e-3
    assert again.backend == chosen


def test_auto_rejects_a_backend_that_disagrees(monkeypatch, network, batch, tmp_path, shared_cache):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    private_copy_of_the_export(network, shared_cache, tmp_path)
    monkeypatch.setitem(sys.modules, "openvino", None)
    monkeypatch.setattr(backends, "AUTO_MIN_FLOPS", 0)
    real = backends._ENGINE_BUILDERS["onnxruntime"]
    monkeypatch.setitem(backends._ENGINE_BUILDERS, "onnxruntime",
                        lambda path, threads: (lambda array: real(path, threads)(array) + 0.01))
    notes: list[str] = []
    runner = backends.prepare(network, backend="auto", cache_dir=tmp_path, log=notes.append)
    assert torch.equal(runner(batch), eager(network, batch))
    assert runner.backend == "eager"
    assert any("Not using onnxruntime" in note for note in notes)
    # The negative verdict is remembered: the next runner neither exports nor runs the check again.
    monkeypatch.setattr(backends, "export_onnx", lambda *args: pytest.fail("exported again"))
    later = backends.prepare(network, backend="auto", cache_dir=tmp_path)
    later(batch)
    assert later.backend == "eager"


def test_auto_survives_an_export_failure(monkeypatch, network, batch, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    monkeypatch.setattr(backends, "AUTO_MIN_FLOPS", 0)

    def broken_export(*args):
        raise RuntimeError("unsupported operator aten::weird")
    monkeypatch.setattr(backends, "export_onnx", broken_export)
    notes: list[str] = []
    runner = backends.prepare(network, backend="auto", cache_dir=tmp_path, log=notes.append)
    assert torch.equal(runner(batch), eager(network, batch))
    assert runner.backend == "eager"
    assert any("unsupported operator aten::weird" in note for note in notes)
    with pytest.raises(BratsUNetError, match="cannot run this network.*--backend eager"):
        backends.prepare(network, SHAPE, backend="onnxruntime", cache_dir=tmp_path)


def test_export_cache_is_reused_and_a_damaged_file_is_exported_again(monkeypatch, network, batch, tmp_path,
                                                                     shared_cache):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    reference = eager(network, batch)
    name = private_copy_of_the_export(network, shared_cache, tmp_path)  # to damage below
    exported = tmp_path / name
    stamp = exported.stat().st_mtime_ns

    real_export = backends.export_onnx
    exports: list[tuple] = []

    def counting_export(*args):
        exports.append(tuple(args[1]))
        return real_export(*args)
    monkeypatch.setattr(backends, "export_onnx", counting_export)
    reused = backends.prepare(network, SHAPE, backend="onnxruntime", cache_dir=tmp_path)
    assert (reused(batch) - reference).abs().max() <= 1e-3
    assert exports == [] and exported.stat().st_mtime_ns == stamp

    content = exported.read_bytes()
    exported.write_bytes(content[: len(content) // 2])  # a truncated file, as after a crash or a full disk
    notes: list[str] = []
    repaired = backends.prepare(network, SHAPE, backend="onnxruntime", cache_dir=tmp_path, log=notes.append)
    assert exports == [SHAPE]
    assert (repaired(batch) - reference).abs().max() <= 1e-3
    assert any("damaged" in note for note in notes)
    assert onnx_files(tmp_path) == [name]  # replaced in place, no temporary files left behind


def test_a_new_input_shape_gets_its_own_export(network, shared_cache):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    runner = backends.prepare(network, backend="onnxruntime", cache_dir=shared_cache)
    other = torch.randn(1, 4, 40, 32, 24, generator=torch.Generator().manual_seed(2))
    assert (runner(other) - eager(network, other)).abs().max() <= 1e-3
    assert any(name.endswith("-1x4x40x32x24.onnx") for name in onnx_files(shared_cache))


def test_different_weights_never_share_an_export(network):
    assert backends.model_fingerprint(network) == backends.model_fingerprint(tiny_network(0))
    assert backends.model_fingerprint(network) != backends.model_fingerprint(tiny_network(1))


def test_backend_errors_are_one_line_user_errors(network):
    with pytest.raises(BratsUNetError, match="Unknown backend 'fastest'.*eager"):
        backends.prepare(network, backend="fastest")
    with pytest.raises(BratsUNetError, match="runs on the CPU"):
        backends.prepare(network, backend="onnxruntime", device="cuda")


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BRATSUNET_CACHE_DIR", str(tmp_path / "mine"))
    assert backends.default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("BRATSUNET_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if os.name != "nt":
        assert backends.default_cache_dir() == tmp_path / "bratsunet" / "exports"


def test_segment_command_offers_every_backend():
    from BratsUNetLib.cli.arguments import inference as segment

    assert segment.BACKENDS == backends.BACKENDS  # spelled out there so that `bratsunet --help` needs no torch


def test_segment_command_runs_the_network_through_the_chosen_backend(monkeypatch, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import nibabel as nib

    from BratsUNetLib.models.checkpoint import save_checkpoint
    from BratsUNetLib.cli.main import main
    from BratsUNetLib.config.loading import load_config
    from BratsUNetLib.phantoms.generate import generate_case, write_case

    config = load_config({
        "model": {"name": "DynUNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 3,
                  "kernel_size": [3, 3, 3], "strides": [1, 2, 2], "upsample_kernel_size": [2, 2],
                  "filters": [4, 8, 16]},
        "optimizer": {"name": "Adam"}, "loss": {"name": "DiceLoss", "sigmoid": True},
        "dataset": {"name": "SegmentationDataset", "desired_shape": [32, 32, 32], "labels": [2, 1, 4],
                    "setup_label_hierarchy": True, "resample": True, "crop_foreground": True},
        "training": {"batch_size": 1}})
    save_checkpoint(tmp_path / "model.pth", tiny_network(), config=config, channels=["flair", "t1", "t1ce", "t2"])
    images = write_case(generate_case((40, 44, 36), seed=5), tmp_path, "case")
    monkeypatch.setenv("BRATSUNET_CACHE_DIR", str(tmp_path / "cache"))
    outputs = {}
    for backend in ("eager", "onnxruntime"):
        outputs[backend] = tmp_path / f"probabilities-{backend}.nii.gz"
        argv = ["segment", "--model", str(tmp_path / "model.pth"), "--output", str(tmp_path / f"{backend}.nii.gz"),
                "--probabilities", str(outputs[backend]), "--progress", "none", "--backend", backend]
        assert main(argv + [f"--{name}={images[name]}" for name in ("flair", "t1", "t1ce", "t2")]) == 0
    eager_p, fast_p = (np.asarray(nib.load(outputs[name]).dataobj) for name in ("eager", "onnxruntime"))
    assert np.abs(eager_p - fast_p).max() <= 1e-3
    assert onnx_files(tmp_path / "cache") == [f"{backends.model_fingerprint(tiny_network())}-1x4x32x32x32.onnx"]

    monkeypatch.setitem(sys.modules, "openvino", None)
    argv[-1] = "openvino"
    assert main(argv + ["--overwrite", "--flair", str(tmp_path / "not-read-before-the-backend-check.nii.gz")]) == 2
    assert "openvino backend is not installed" in capsys.readouterr().err


@pytest.mark.skipif(not backends._installed("openvino"), reason="OpenVINO is not installed")
def test_openvino_is_loaded_without_its_usage_telemetry():
    """Loading OpenVINO must send nothing home: its telemetry stub is used and no sender thread is started."""
    program = ("import sys, threading\nfrom BratsUNetLib.inference import backends\nbackends._import_openvino()\n"
               "from openvino.tools.ovc import telemetry_utils\n"
               "print(telemetry_utils.tm.__name__, [thread.name for thread in threading.enumerate()])\n"
               "import openvino_telemetry\n")  # still importable for anyone else who wants it
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                            env={key: value for key, value in os.environ.items() if key != "CI"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["openvino.tools.ovc.telemetry_stub", "['MainThread']"]


def test_background_preparation_loads_a_remembered_backend_and_never_exports(monkeypatch, network, batch,
                                                                             shared_cache, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    monkeypatch.setattr(backends, "AUTO_MIN_FLOPS", 0)
    reference = eager(network, batch)
    backends.prepare(network, backend="auto", cache_dir=shared_cache)(batch)  # checks once, or remembers

    def no_eager(*args):
        raise AssertionError("eager forward pass or export during a remembered verdict")
    monkeypatch.setattr(network, "forward", no_eager)
    monkeypatch.setattr(backends, "export_onnx", no_eager)
    runner = backends.prepare(network, backend="auto", cache_dir=shared_cache)
    runner.prepare_in_background(SHAPE)
    runner._wait_for_background()
    assert runner.backend in ("openvino", "onnxruntime") and len(runner._engines) == 1
    assert (runner(batch) - reference).abs().max() <= 1e-3

    # With nothing remembered, the background does nothing (no export) and the first call checks as usual.
    monkeypatch.undo()
    monkeypatch.setattr(backends, "AUTO_MIN_FLOPS", 0)
    private_copy_of_the_export(network, shared_cache, tmp_path)  # the export, no verdict
    fresh = backends.prepare(network, backend="auto", cache_dir=tmp_path)
    fresh.prepare_in_background(SHAPE)
    fresh._wait_for_background()
    assert fresh.backend is None and not fresh._engines
    assert torch.equal(fresh(batch), reference)  # the checking call answers with eager's logits
    assert fresh.backend in ("openvino", "onnxruntime")
